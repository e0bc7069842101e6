"""No function or method in benchsuite/ or scripts/ is longer than ``MAX_LINES`` lines (issue 25): a longer one is
split into named pieces a reader can test alone. Read statically (``ast``), decorators and docstrings included."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 100


def long_functions(folder: Path, limit: int = MAX_LINES) -> dict[str, int]:
    """``{"path:function": lines}`` of every function under ``folder`` longer than ``limit`` lines."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - start + 1 > limit:
                    found[f"{path.relative_to(folder.parent)}:{node.name}"] = node.end_lineno - start + 1
    return found


def test_no_function_in_the_package_or_the_scripts_is_over_100_lines():
    assert {**long_functions(ROOT / "benchsuite"), **long_functions(ROOT / "scripts")} == {}


def test_the_count_includes_decorators_and_nested_functions(tmp_path):
    def lines(n: int, indent: int) -> str:
        return "\n".join(" " * indent + f"x{i} = {i}" for i in range(n))

    (tmp_path / "pkg").mkdir()
    # f: 1 decorator + 1 def + 99 = 101 lines; g: 1 + h (1 + 98) + 1 = 101, h itself 99
    (tmp_path / "pkg" / "m.py").write_text(f"@staticmethod\ndef f():\n{lines(99, 4)}\n\n"
                                           f"def g():\n    def h():\n{lines(98, 8)}\n    return 1\n")
    assert long_functions(tmp_path / "pkg") == {"pkg/m.py:f": 101, "pkg/m.py:g": 101}
