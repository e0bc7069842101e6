"""The CLI introduces itself: --version, --help with every subcommand, untruncated method descriptions."""

import argparse
import importlib.metadata
import inspect
import subprocess
import sys

import pytest

from benchsuite.cli import build_parser, main
from benchsuite.registry import METHODS


def test_version_prints_the_installed_version_and_exits_0():
    """Regression: ``benchsuite --version`` exited 2 (no such option)."""
    proc = subprocess.run([sys.executable, "-m", "benchsuite.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"benchsuite {importlib.metadata.version('benchsuite')}"


def _subcommands(parser):
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {choice.dest: choice.help for choice in action._choices_actions}


def test_help_lists_every_subcommand_with_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    commands = _subcommands(build_parser())
    assert {"list", "show", "run", "ask", "tell", "weights", "sweep", "tune", "report"} <= set(commands)
    for name, help_text in commands.items():
        assert help_text and "\n" not in help_text, name
        assert f"{name} {' '.join(help_text.split())}" in text, name


def test_list_prints_each_method_description_whole(capsys):
    """Regression: ``list`` cut each description at the first line of its docstring, mid-sentence."""
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    for name in METHODS.names():
        paragraph = inspect.cleandoc(METHODS.load(name).__doc__).split("\n\n")[0]
        assert f"{name} {' '.join(paragraph.split())}" in flat, name
    assert max(len(line) for line in out.splitlines()) <= 118
