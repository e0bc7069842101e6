"""Fuzzing bad input: task cards, overrides and the CLI only ever fail with a one-line BenchsuiteError."""

import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchsuite.cli import main
from benchsuite.config import parse_overrides, resolve
from benchsuite.errors import BenchsuiteError
from benchsuite.tasks import load_spec, parse_card

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
GOOD = yaml.safe_load(open(load_spec("toy-brightness-v0").source).read())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(sorted(GOOD) + ["extra"]), value=VALUES)
def test_mutated_cards_fail_cleanly(key, value):
    card = dict(GOOD, **{key: value})
    try:
        parse_card(card, "fuzz.yaml")
    except BenchsuiteError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.yaml")


@settings(max_examples=200, deadline=None)
@given(raw=VALUES)
def test_arbitrary_yaml_documents_fail_cleanly(raw):
    try:
        parse_card(raw, "doc.yaml")
    except BenchsuiteError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None)
@given(field=st.text(string.ascii_lowercase + "_", min_size=1, max_size=15), value=st.text(max_size=10))
def test_overrides_fail_cleanly(field, value):
    try:
        resolve("toy-brightness-v0", "ddpo", overrides=parse_overrides([f"method.{field}={value}"]))
    except BenchsuiteError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("text", ["a: [1, 2", "id: x\n  bad: indent", "\t- tab", "{{{{", "key: !!python/object:os.system x"])
def test_malformed_card_files_name_the_file(tmp_path, monkeypatch, text):
    from benchsuite import tasks

    (tmp_path / "broken-v0.yaml").write_text(text)
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(tmp_path))
    tasks._cards.cache_clear()
    try:
        with pytest.raises(BenchsuiteError, match="broken-v0.yaml"):
            tasks.task_specs()
    finally:
        tasks._cards.cache_clear()


ARGS = st.lists(st.one_of(st.sampled_from(["run", "list", "--task", "--method", "--budget", "--seed", "--set",
                                           "--threads", "--resume", "--restart", "--oracle-timeout", "tasks",
                                           "toy-brightness-v0", "ddpo", "-1", "0", "nan", "method.lr=x",
                                           "method.batch_size=-3", "--no-mlflow"]),
                          st.text(max_size=6)), max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=ARGS)
def test_cli_never_tracebacks(argv, capsys, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    if "run" in argv and "--budget" not in argv:
        argv = [*argv, "--budget", "0"]  # keep accidental valid runs instant
    try:
        code = main([*argv, "--output", str(out / "o"), "--no-mlflow", "--no-progress"] if argv[:1] == ["run"] else argv)
    except SystemExit as exc:  # --help
        code = exc.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("benchsuite: error: "), err
