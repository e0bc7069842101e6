"""The report's LaTeX tables fit a paper as they are: built from a synthetic report of 7 tasks and 8 methods with
long names and realistic numbers, compiled with pdflatex in a one-column and a two-column article, no overfull box.

Without pdflatex the compiling test is skipped, except under CI=true (.ci/run installs it), where it fails."""

import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

import benchsuite.report
from benchsuite.report import write_report
from benchsuite.report.labels import ReportTask
from benchsuite.report.latex import abbreviations, text_width, wrap
from benchsuite.report.stats import t_interval_coverage
from benchsuite.report.tables import TIDY_COLUMNS

METHODS = {  # name: (gain in units of the task's scale, drift per unit of budget, seed spread)
    "pretrained": (0.0, 0.0, 0.2), "best-of-n": (0.35, 0.0, 0.3), "bo": (0.3, 0.0, 0.5),
    "ddpo": (0.8, 3.0, 0.6), "draft-lv": (1.1, 5.0, 0.5), "vard": (0.6, 1.5, 0.4),
    "sqdf-offline-value": (0.9, 2.5, 0.7), "ctrl-classifier-guidance": (0.7, 1.0, 0.5),
}
TASKS = {  # id: (headline judge, pretrained mean, scale, drift budget, online)
    "digits-jpeg-compress-v2": ("jpeg", -118.4, 25.0, 8.0, False),
    "digits-classifier-v2": ("class_prob", 0.1023, 0.4, 8.0, False),
    "digits-jpeg-incompress-v1": ("jpeg", 96.12, 30.0, None, False),
    "ehrlich-s32-l128-v2": ("ehrlich", 0.0213, 0.15, 32.0, True),
    "ehrlich-s32-l64-v2": ("ehrlich", 0.0561, 0.2, 32.0, True),
    "selfies-chembl-qed-v0": ("qed", 0.6187, 0.12, None, True),
    "sd15-aesthetic-photograph-v0": ("aesthetic", 5.412, 1.3, 12.0, False),
}
SEEDS, QUERIES = 5, 512


def report_tasks() -> dict[str, ReportTask]:
    out = {}
    for task, (judge, _, _, budget, online) in TASKS.items():
        head = f"eval/{judge}_mean"
        judges = (head, "eval/gold_mean")
        query = ("query/top10_mean", "query/best") if online else ()
        metrics = (head, *query, "eval/gold_mean", "eval/kl", "eval/diversity", "eval/vendi", "wall_time_s",
                   "cost/queries")
        out[task] = ReportTask(task, head, judges, metrics, budget, online,
                               ((head, f"{judge}-reward v1 (render_size=32)"), ("eval/gold_mean", "gold v0")))
    return out


def synthetic_tidy(commit: str = "0123456789abcdef0123456789abcdef01234567") -> pd.DataFrame:
    """Seven tasks, eight methods, five seeds, evaluations at 0, 128, 256 and 512 queries: fine-tuners drift
    (path KL grows with queries), the references do not."""
    rng = np.random.default_rng(7)
    rows = []
    for task, (judge, base, scale, budget, online) in TASKS.items():
        for method, (gain, drift, spread) in METHODS.items():
            for seed in range(SEEDS):
                noise = spread * scale * 0.1 * rng.normal()
                for q in (0, 128, 256, 512):
                    f = q / QUERIES if drift else (1.0 if method != "pretrained" else 0.0)
                    r = base + scale * gain * f + (noise if method != "pretrained" or q else 0.0)
                    kl = drift * (budget or 10.0) * 0.4 * f * (1 + 0.1 * seed) if drift else 0.05 * gain
                    values = {f"eval/{judge}_mean": r, "eval/gold_mean": r - 0.05 * scale * drift * f,
                              "eval/kl": kl, "eval/diversity": 0.41 - 0.02 * drift * f + 0.003 * seed,
                              "eval/vendi": 12.3 - drift * f + 0.1 * seed, "cost/queries": q}
                    if online:
                        values |= {"query/top10_mean": r + 0.1 * scale, "query/best": r + 0.2 * scale}
                    rows += [(task, method, seed, q, k, v) for k, v in values.items()]
                rows.append((task, method, seed, QUERIES, "wall_time_s", 1234.5 + 300 * drift + 17 * seed))
    tidy = pd.DataFrame(rows, columns=TIDY_COLUMNS)
    tidy["commit"] = commit
    return tidy


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """The report's files without its figures (drawing 7 tasks' figures takes 15 s; the tables do not read them)."""
    out = tmp_path_factory.mktemp("latex") / "report"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(benchsuite.report, "_task_figures", lambda *args: [])
        write_report(synthetic_tidy(), out, tasks=report_tasks())
    return out


def test_tables_are_written_once_each_with_short_captions(report_dir):
    folder = report_dir / "tables"
    assert sorted(p.stem for p in folder.glob("*.tex")) == sorted(["legend", "main", *TASKS])
    combined = (report_dir / "leaderboard.tex").read_text()
    for part in folder.glob("*.tex"):
        assert part.read_text().strip() in combined
    for caption in re.findall(r"\\caption\{(.*)\}", combined):
        assert caption.count(". ") == 0 and len(caption) < 300, caption  # one sentence
    assert r"\resizebox" not in combined and "eval/" not in combined
    legend = (folder / "legend.tex").read_text()
    assert legend.count(r"\emph{path KL}") == 1 and "CCG = ctrl-classifier-guidance" in legend
    assert r"\label{sec:tables-legend}" in legend and "0123456789abcdef0123456789abcdef01234567" in legend
    measured = t_interval_coverage(SEEDS)  # the coverage the report states is measured at its seed count
    figures = f"{measured['normal']:.1%} for normal per-seed values, {measured['skewed']:.1%} for skewed"
    assert f"at this report's {SEEDS} seeds (2000 samples): {figures}" in (report_dir / "leaderboard.md").read_text()
    assert figures.replace("%", r"\%") in legend
    main = (folder / "main.tex").read_text()
    assert r"\begin{table*}" in main and r"$\Delta$ vs best-of-n" in main


def test_names_are_abbreviated_only_when_too_wide():
    assert abbreviations(["ddpo", "ctrl-classifier-guidance", "sqdf-offline-value", "sqdf-online-value"], 32.0) == {
        "ctrl-classifier-guidance": "CCG", "sqdf-offline-value": "SOV", "sqdf-online-value": "SOV2"}
    assert abbreviations(["a", "b"], 0.0, prefix="T") == {"a": "T1", "b": "T2"}
    assert wrap("JPEG reward at matched drift", text_width("JPEG reward")) == ["JPEG reward", "at matched", "drift"]


def _pdflatex():
    exe = shutil.which("pdflatex")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdflatex is missing under CI=true: .ci/run installs texlive-latex-recommended")
        pytest.skip("pdflatex not installed (Debian: apt-get install texlive-latex-base texlive-latex-recommended)")
    return exe


@pytest.mark.parametrize("options", ["", "twocolumn"])
def test_tables_compile_without_overfull_boxes(report_dir, tmp_path, options):
    """Every table of the report fits: one-column article (main table at the text width), two-column article (main
    table a table* across both columns, each per-task table within one column). Fails on any overfull box."""
    exe = _pdflatex()
    shutil.copytree(report_dir / "tables", tmp_path / "tables")
    body = "\n".join(rf"\input{{tables/{p.stem}}}\clearpage" for p in [
        report_dir / "tables" / "legend.tex", report_dir / "tables" / "main.tex",
        *sorted((report_dir / "tables").glob("*-v*.tex"))])
    doc = (f"\\documentclass[{options}]{{article}}\n\\usepackage{{booktabs}}\n\\begin{{document}}\n"
           "\\section{Results}\\label{sec:results}\n" + body + "\n\\end{document}\n")
    (tmp_path / "paper.tex").write_text(doc)
    done = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert done.returncode == 0, log[-3000:]
    overfull = re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too \w+\)[^\n]*", log)
    assert not [o for o in re.findall(r"Overfull \\hbox[^\n]*", log)], overfull
    assert "Float too large" not in log


def test_a_report_of_runs_from_an_uncommitted_tree_is_refused_unless_allowed(tmp_path):
    """The runs' recorded commits decide (not the checkout the tests run in): one dirty run refuses the report with
    a one-line error that says what to do, nothing written; allowed, the report is marked in the markdown, the
    legend and atop every .tex file, and per_seed.csv says which runs."""
    from benchsuite.errors import DirtyTreeError

    tidy = synthetic_tidy()
    tidy = tidy[tidy["task"].isin(list(TASKS)[:2])]
    dirty = (tidy["method"] == "ddpo") & (tidy["seed"] == 1)
    tidy.loc[dirty, "commit"] = "89abcdef-dirty"
    with pytest.raises(DirtyTreeError, match=r"89abcdef-dirty\): commit .* --allow-dirty") as error:
        write_report(tidy, tmp_path / "refused", tasks=report_tasks())
    assert "\n" not in str(error.value) and error.value.exit_code == 2 and not (tmp_path / "refused").exists()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(benchsuite.report, "_task_figures", lambda *args: [])
        write_report(tidy, tmp_path / "marked", tasks=report_tasks(), allow_dirty=True)
    folder = tmp_path / "marked"
    md = (folder / "leaderboard.md").read_text()
    assert "**Warning: made from an uncommitted tree: 89abcdef-dirty.**" in md
    assert "Commits of the runs: `0123456789abcdef0123456789abcdef01234567`, `89abcdef-dirty`." in md
    for part in (folder / "tables").glob("*.tex"):
        assert part.read_text().startswith("% made from an uncommitted tree: 89abcdef-dirty\n"), part.name
    assert "Made from an uncommitted tree" in (folder / "tables" / "legend.tex").read_text()
    per_seed = pd.read_csv(folder / "per_seed.csv")
    assert sorted(per_seed.loc[per_seed["commit"] == "89abcdef-dirty", "seed"].unique()) == [1]
