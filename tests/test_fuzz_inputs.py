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
        with pytest.raises(BenchsuiteError, match="broken-v0.yaml") as info:
            tasks.load_spec("broken-v0")
        assert "\n" not in str(info.value) and "broken-v0.yaml" in tasks.broken_cards()["broken-v0"]
        assert "toy-brightness-v0" in tasks.task_specs()  # the other cards still load
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


# ---- classes of bad input the fuzzers above never generated (issue 16) ------------------------------------------
# Each: one line, exit code 2, and the output folder never created.

NON_FINITE = st.one_of(
    st.sampled_from([".nan", ".NaN", ".inf", "+.inf", "-.inf", ".Inf"]),
    st.builds(lambda sign, digits, exp: f"{sign}{digits}e{exp}", st.sampled_from(["", "-", "+"]),
              st.sampled_from(["1", "1.0", "9.99", "4"]), st.integers(309, 100_000)),
)
"""YAML scalars that parse to a non-finite float: ``1e400`` is inf after YAML parsing, ``.nan`` is nan."""
ABSURD = st.integers(10**9 + 1, 10**40)
"""Integers past the bound every count, budget and integer setting has (10**9; seeds 2**32 - 1)."""
NOT_UTF8 = st.binary(min_size=1, max_size=64).filter(lambda b: not _decodes(b))


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fails_cleanly(argv, out, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, code, err)
    assert err.count("\n") == 1 and err.startswith("benchsuite: error: "), err
    assert not out.exists(), f"{argv} wrote {out}"
    return err


def _run_argv(out, *extra):
    return ["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--output", str(out), "--no-progress",
            "--no-mlflow", *extra]


CLI_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@CLI_SETTINGS
@given(text=NON_FINITE, key=st.sampled_from(["method.lr", "method.kl_coef", "method.clip_range", "task.sampler.eta",
                                              "task.sampler.num_steps", "task.sampler.guidance_scale"]))
def test_non_finite_settings_fail_cleanly(text, key, capsys, tmp_path_factory):
    out = tmp_path_factory.mktemp("nonfinite") / "o"
    err = _fails_cleanly(_run_argv(out, "--set", f"{key}={text}"), out, capsys)
    assert key.split(".")[-1] in err


@CLI_SETTINGS
@given(text=NON_FINITE, key=st.sampled_from(["online.bonus", "online.lr", "online.inner_sample_ratio"]))
def test_non_finite_online_overrides_fail_cleanly(text, key, capsys, tmp_path_factory):
    out = tmp_path_factory.mktemp("online") / "o"
    argv = ["run", "--task", "toy-online-v0", "--method", "ddpo", "--output", str(out), "--no-mlflow",
            "--set", f"task.{key}={text}"]
    _fails_cleanly(argv, out, capsys)


@CLI_SETTINGS
@given(value=ABSURD, option=st.sampled_from([
    ("run", "--budget"), ("run", "--seed"), ("run", "--threads"), ("run", "--oracle-retries"),
    ("sweep", "--budget"), ("sweep", "--workers"), ("sweep", "--seeds"),
    ("tune", "--trials"), ("tune", "--workers"), ("tune", "--budget"), ("tune", "--seed"), ("tune", "--sampler-seed"),
    ("tune", "--heartbeat-interval"), ("ask", "--budget"), ("ask", "--seed")]))
def test_absurd_counts_fail_cleanly(value, option, capsys, tmp_path_factory):
    out = tmp_path_factory.mktemp("absurd") / "o"
    command, flag = option
    value += 2**32 if "seed" in flag else 0  # seeds go up to 2**32 - 1
    argv = {"run": _run_argv(out),
            "sweep": ["sweep", "--tasks", "toy-brightness-v0", "--methods", "ddpo", "--output", str(out)],
            "tune": ["tune", "--task", "toy-brightness-v0", "--method", "sqdf", "--output", str(out)],
            "ask": ["ask", "--state", str(out), "--task", "toy-brightness-v0", "--method", "ddpo"]}[command]
    err = _fails_cleanly([*argv, flag, str(value)], out, capsys)
    assert "10**9" in err or "2**32 - 1" in err


@CLI_SETTINGS
@given(value=ABSURD, key=st.sampled_from(["method.batch_size", "method.num_inner_epochs", "method.train_batch_size",
                                          "task.sampler.num_steps"]))
def test_absurd_integer_settings_fail_cleanly(value, key, capsys, tmp_path_factory):
    out = tmp_path_factory.mktemp("absurd") / "o"
    err = _fails_cleanly(_run_argv(out, "--set", f"{key}={value}"), out, capsys)
    assert "at most 10**9" in err


@pytest.mark.parametrize("argv", [
    ["tune", "--task", "toy-brightness-v0", "--method", "sqdf", "--trials", "0"],
    ["tune", "--task", "toy-brightness-v0", "--method", "sqdf", "--workers", "0"],
    ["tune", "--task", "toy-brightness-v0", "--method", "sqdf", "--heartbeat-interval", "0"],
    ["sweep", "--tasks", "toy-brightness-v0", "--methods", "ddpo", "--workers", "0"],
    ["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--threads", "0"],
    ["run", "--task", "toy-brightness-v0", "--method", "ddpo", "--set", "task.sampler.num_steps=0"],
])
def test_zero_counts_fail_cleanly(argv, capsys, tmp_path):
    """Regression: ``tune --trials 0`` raised KeyError after creating a study log and an MLflow store."""
    out = tmp_path / "o"
    _fails_cleanly([*argv, "--output", str(out)], out, capsys)


def test_zero_budget_ask_fails_cleanly(capsys, tmp_path):
    """Regression: ``ask --budget 0`` wrote a session that could never ask anything, then failed."""
    state = tmp_path / "session"
    _fails_cleanly(["ask", "--state", str(state), "--task", "toy-brightness-v0", "--method", "pretrained",
                    "--budget", "0"], state, capsys)


def test_zero_trials_through_the_api_write_nothing(tmp_path):
    from benchsuite.errors import ConfigError
    from benchsuite.tuning import Tuner, TuneSpec

    with pytest.raises(ConfigError, match="number of trials must be a positive integer"):
        Tuner(TuneSpec(task="toy-brightness-v0", method="sqdf", n_trials=0, output_root=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


SUPPORTED = {"sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "databricks-uc", "uc", "file"}


@CLI_SETTINGS
@given(scheme=st.from_regex(r"[a-z][a-z0-9+.-]{1,12}", fullmatch=True).filter(
           lambda s: s.split("+")[0] not in SUPPORTED),
       command=st.sampled_from(["run", "sweep", "tune", "report"]))
def test_unsupported_tracking_uris_fail_cleanly(scheme, command, capsys, tmp_path_factory):
    """Regression: ``--mlflow-uri bogus://x`` ended in a traceback and left an empty run folder."""
    out = tmp_path_factory.mktemp("uri") / "o"
    uri = f"{scheme}://x"
    argv = {"run": ["run", "--task", "toy-brightness-v0", "--method", "pretrained", "--budget", "0",
                    "--output", str(out), "--no-progress"],
            "sweep": ["sweep", "--tasks", "toy-brightness-v0", "--methods", "pretrained", "--budget", "0",
                      "--output", str(out)],
            "tune": ["tune", "--task", "toy-brightness-v0", "--method", "sqdf", "--trials", "1", "--output", str(out)],
            "report": ["report", "--tasks", "toy-brightness-v0", "--out", str(out)]}[command]
    err = _fails_cleanly([*argv, "--mlflow-uri", uri], out, capsys)
    assert "tracking URI" in err


@pytest.mark.parametrize("uri", ["/tmp/a/folder", "file:///tmp/store", "sqlite://", "sqlite:///:memory:"])
def test_file_stores_and_sqlite_without_a_file_fail_cleanly(uri, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    out = tmp_path / "o"
    _fails_cleanly(["run", "--task", "toy-brightness-v0", "--method", "pretrained", "--budget", "0", "--output",
                    str(out), "--no-progress", "--mlflow-uri", uri], out, capsys)


def test_tracking_uri_from_the_environment_is_checked_too(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://x")
    out = tmp_path / "o"
    _fails_cleanly(["run", "--task", "toy-brightness-v0", "--method", "pretrained", "--budget", "0", "--output",
                    str(out), "--no-progress"], out, capsys)


def test_reading_a_report_from_a_missing_sqlite_store_creates_nothing(capsys, tmp_path):
    out = tmp_path / "rep"
    err = _fails_cleanly(["report", "--mlflow-uri", f"sqlite:///{tmp_path / 'absent.db'}", "--tasks",
                          "toy-brightness-v0", "--out", str(out)], out, capsys)
    assert "no MLflow database" in err and not (tmp_path / "absent.db").exists()


FILE_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FILE_SETTINGS
@given(data=NOT_UTF8)
def test_undecodable_sweep_files_fail_cleanly(data, capsys, tmp_path_factory):
    """Regression: a sweep file of non-UTF-8 bytes raised UnicodeDecodeError."""
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "s.yaml").write_bytes(data)
    err = _fails_cleanly(["sweep", str(folder / "s.yaml"), "--output", str(folder / "o")], folder / "o", capsys)
    assert "not UTF-8 text" in err and "s.yaml" in err


def _load_card(folder, content, monkeypatch):
    """``load_spec`` of the card ``fuzz-card-v0`` written (text or bytes) into ``folder``, an extra task folder."""
    from benchsuite import tasks

    path = folder / "fuzz-card-v0.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.setenv("BENCHSUITE_TASKS_DIR", str(folder))
    tasks._cards.cache_clear()
    try:
        return load_spec("fuzz-card-v0")
    finally:
        tasks._cards.cache_clear()


def _card_error(folder, content, monkeypatch) -> str:
    with pytest.raises(BenchsuiteError, match="fuzz-card-v0.yaml") as info:
        _load_card(folder, content, monkeypatch)
    assert "\n" not in str(info.value)
    return str(info.value)


@FILE_SETTINGS
@given(data=NOT_UTF8)
def test_undecodable_task_cards_fail_cleanly(data, tmp_path_factory, monkeypatch):
    assert "fuzz-card-v0.yaml: not UTF-8 text" in _card_error(tmp_path_factory.mktemp("cards"), data, monkeypatch)


def _preset_copy(folder, text: bytes):
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "baselines" / "ddpo"
    shutil.copytree(root, folder / "ddpo", ignore=shutil.ignore_patterns("tuned"))
    (folder / "ddpo" / "defaults.yaml").write_bytes(text)


@FILE_SETTINGS
@given(data=NOT_UTF8)
def test_undecodable_presets_fail_cleanly(data, capsys, tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("baselines")
    _preset_copy(folder, data)
    monkeypatch.setenv("BENCHSUITE_BASELINES_DIR", str(folder))
    out = folder / "o"
    err = _fails_cleanly(_run_argv(out), out, capsys)
    assert "defaults.yaml: not UTF-8 text" in err


@FILE_SETTINGS
@given(text=NON_FINITE, key=st.sampled_from(["lr", "clip_range", "adv_clip_max"]))
def test_non_finite_presets_fail_cleanly(text, key, capsys, tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("baselines")
    _preset_copy(folder, f"tiny:\n  batch_size: 32\n  {key}: {text}\n".encode())
    monkeypatch.setenv("BENCHSUITE_BASELINES_DIR", str(folder))
    out = folder / "o"
    err = _fails_cleanly(_run_argv(out), out, capsys)
    assert f"{key} must be a finite number" in err


CARD_NUMBERS = [("sampler", "eta"), ("sampler", "num_steps"), ("eval", "seed"), ("eval", "samples_per_condition"),
                ("default_budget",), ("drift_budget",), ("oracle", "kwargs", "scale"), ("conditions", "train")]


@FILE_SETTINGS
@given(where=st.sampled_from(CARD_NUMBERS),
       value=st.one_of(NON_FINITE.filter(lambda text: isinstance(yaml.safe_load(text), float)), ABSURD.map(str)))
def test_non_finite_and_absurd_card_numbers_fail_cleanly(where, value, tmp_path_factory, monkeypatch):
    card = yaml.safe_load(yaml.safe_dump(GOOD))
    card["id"] = "fuzz-card-v0"
    node = card
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = "__VALUE__"
    text = yaml.safe_dump(card).replace("__VALUE__", value)
    err = _card_error(tmp_path_factory.mktemp("cards"), text, monkeypatch)
    assert "finite" in err or "10**9" in err


@pytest.mark.parametrize("value, expect", [("1e-1", 0.1), ("abc", "sampler.eta must be a number, got 'abc'"),
                                           ("1e309", "sampler.eta must be a finite number, got inf")])
def test_card_sampler_settings_are_checked_against_the_backbone(value, expect, tmp_path, monkeypatch):
    """A card's sampler values get the task overrides' check: YAML 1.1 reads ``1e-1`` (no dot) as a string, which
    becomes the number; a value of the wrong type is an error of the card, not a traceback in a run."""
    card = dict(GOOD, id="fuzz-card-v0", sampler={"num_steps": 5, "eta": "__VALUE__"})
    text = yaml.safe_dump(card).replace("__VALUE__", value)
    if isinstance(expect, float):
        assert dict(_load_card(tmp_path, text, monkeypatch).sampler)["eta"] == expect
    else:
        assert _card_error(tmp_path, text, monkeypatch).endswith(f"fuzz-card-v0.yaml: card: {expect}")


@FILE_SETTINGS
@given(data=NOT_UTF8, suffix=st.sampled_from([".csv", ".json"]))
def test_undecodable_answer_files_fail_cleanly(data, suffix, capsys, tmp_path_factory):
    from benchsuite.asktell import read_scores

    path = tmp_path_factory.mktemp("answers") / f"scores{suffix}"
    path.write_bytes(data)
    with pytest.raises(BenchsuiteError, match="UTF-8") as info:
        read_scores(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["[" * 5000, "a:\n" + "  - " * 3000 + "x"])
def test_deeply_nested_yaml_fails_cleanly(text, capsys, tmp_path):
    (tmp_path / "s.yaml").write_text(text)
    _fails_cleanly(["sweep", str(tmp_path / "s.yaml"), "--output", str(tmp_path / "o")], tmp_path / "o", capsys)
