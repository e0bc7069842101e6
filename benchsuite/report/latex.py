"""The report's LaTeX: booktabs tables that fit a paper as they are, their definitions written once.

``write_report`` writes, under ``tables/`` of the report folder:

- ``legend.tex``: a ``\\paragraph`` block with what every table shows (the interval rule, the paired differences,
  bold, the metrics, the drift budgets, the key to the abbreviated method and task names, the commits);
- ``main.tex``: the main table (label ``tab:main``), the headline of every method on every task with its interval
  and, on a second line, its paired difference to the task's best reference method; one row per method, one column
  per task, the tasks split into several blocks of one float where one block would be wider than the text;
- ``<task>.tex``: one detail table per task (label ``tab:<task>``), every metric of every method, its columns split
  into blocks that each fit one column of a two-column paper.

The placement rule: the main table is a ``table*``, sized for the text width of a one-column article (345 pt, less
than a two-column article's 469 pt text width); in a one-column paper ``table*`` is an ordinary ``table``, in a
two-column paper it spans both columns. Each per-task table is a ``table`` sized for one column of a two-column
article (229.5 pt), so it fits a column there and the text width of a one-column paper. The widths are estimated
from Computer Modern's character widths at ``\\footnotesize`` (``text_width``); tests/test_report_latex.py compiles
the tables with pdflatex in both classes and fails on any overfull box. No ``\\resizebox``: every table is set at
its font's own size.

``leaderboard.tex`` holds the same text, the legend first: a paper can ``\\input`` it alone (``\\input`` resolves paths
from the paper's folder, not from the file's own, so it does not ``\\input`` the files under ``tables/``). The
document needs ``\\usepackage{booktabs}``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .labels import DRIFT_SUFFIX, REFERENCE_METHODS, ReportTask, metric_label
from .tables import format_interval, tex

TEXT_WIDTH_PT = 345.0
"""``\\textwidth`` of a 10 pt one-column ``article``: the main table's width limit."""
COLUMN_WIDTH_PT = 229.5
"""``\\columnwidth`` of a 10 pt two-column ``article``: every per-task table's width limit."""
FONT_PT = 8.0
"""``\\footnotesize`` of a 10 pt article; its Computer Modern (cmr8) is 1.0625 times as wide as cmr10 scaled."""
CMR8_SCALE = 1.0625
TABCOLSEP_PT = 3.0
"""``\\tabcolsep`` of every table: the space at each side of a column."""
SLACK = 0.97
"""Share of a width limit the estimated width may fill (the estimate's margin)."""
FLOAT_HEIGHT_PT = 480.0
"""Estimated height of a float's tabulars past which the rest goes to a continued float: a 10 pt article's text is
550 pt high (one or two columns), less the caption and the float's separation."""
LINE_PT = 9.5
"""``\\baselineskip`` of ``\\footnotesize``; a tabular's rules and a ``\\medskip`` count as about one line each."""

_EM = {**dict.fromkeys("0123456789", 0.5), **dict.fromkeys(".,:;!'", 0.278), " ": 0.333, "-": 0.333, "/": 0.5,
       "(": 0.389, ")": 0.389, "[": 0.278, "]": 0.278, "=": 0.778, "%": 0.833, "&": 0.778, "±": 0.778, "Δ": 0.833,
       "—": 0.5, "*": 0.4, "+": 0.778, "−": 0.778, "<": 0.778, "#": 0.833, "_": 0.5,
       **dict(zip("abcdefghijklmnopqrstuvwxyz", (0.5, 0.556, 0.444, 0.556, 0.444, 0.306, 0.5, 0.556, 0.278, 0.306,
                                                   0.528, 0.278, 0.833, 0.556, 0.5, 0.556, 0.528, 0.392, 0.394, 0.389,
                                                   0.556, 0.528, 0.722, 0.528, 0.528, 0.444))),
       **dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", (0.75, 0.708, 0.722, 0.764, 0.681, 0.653, 0.785, 0.75, 0.361, 0.514,
                                                   0.778, 0.625, 0.917, 0.75, 0.778, 0.681, 0.778, 0.736, 0.556, 0.722,
                                                   0.75, 0.75, 1.028, 0.75, 0.75, 0.611)))}
"""Widths in em of Computer Modern Roman 10 pt characters (cmr10's metrics; math symbols from cmsy10)."""


def text_width(text: str, bold: bool = False) -> float:
    """Estimated width in pt of ``text`` (as displayed, not its LaTeX source) at ``\\footnotesize``; bold (cmbx)
    is about 15% wider. Unknown characters count as an ``m``."""
    em = sum(_EM.get(c, 0.833) for c in text)
    return em * FONT_PT * CMR8_SCALE * (1.15 if bold else 1.0)


def cell(text: str, bold: bool = False) -> str:
    """A table cell typeset: LaTeX's special characters escaped, a number's leading minus as a math minus."""
    out = re.sub(r"(?<![\w.])-(?=\d)", "$-$", tex(text))
    return rf"\textbf{{{out}}}" if bold else out


def _display(text: str) -> str:
    """``text`` as the width estimate reads it: a number's leading minus as the (wider) math minus."""
    return re.sub(r"(?<![\w.])-(?=\d)", "−", text)


def wrap(label: str, width: float) -> list[str]:
    """``label``'s words in lines of at most ``width`` pt (a word longer than that on a line of its own)."""
    lines: list[str] = []
    for word in label.split():
        if lines and text_width(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines or [""]


def header(lines: list[str], align: str = "r") -> str:
    """A header cell of one or more lines (a nested tabular, bottom-aligned: no package needed)."""
    if len(lines) == 1:
        return tex(lines[0])
    return rf"\begin{{tabular}}[b]{{@{{}}{align}@{{}}}}" + r" \\ ".join(map(tex, lines)) + r"\end{tabular}"


def abbreviations(names: list[str], width: float, prefix: str | None = None) -> dict[str, str]:
    """``{name: short}`` for the names wider than ``width`` pt: with ``prefix``, ``<prefix><i>`` (i counting the
    names from 1, so that T3 is the third task); else the initials of its hyphenated parts (ctrl-classifier-guidance
    -> CCG, a part that starts with a digit kept whole), made unique with a number. Names that fit keep
    themselves (and are absent)."""
    out, used = {}, set(n for n in names if text_width(n) <= width)
    for i, name in enumerate(names, 1):
        if text_width(name) <= width:
            continue
        if prefix is not None:
            short = f"{prefix}{i}"
        else:
            parts = [p for p in re.split(r"[-_ ]+", name) if p]
            short = "".join(p if p[0].isdigit() else p[0].upper() for p in parts) or name[:3]
        base, k = short, 2
        while short in used:
            short, k = f"{base}{k}", k + 1
        used.add(short)
        out[name] = short
    return out


METHOD_WIDTH_PT = 45.0
"""Method names wider than this (at ``\\footnotesize``) are abbreviated in every table, with a key in the legend."""


def best_reference(board: pd.DataFrame, task: str, metric: str) -> str | None:
    """The reference method (``REFERENCE_METHODS``: pretrained, best-of-N, BO) with the best mean ``metric`` on
    ``task``, the one every method is compared with in the main table; None when the task has none."""
    rows = board[(board["task"] == task) & board["method"].isin(REFERENCE_METHODS)].dropna(subset=[metric])
    if rows.empty:
        return None
    return rows.sort_values([metric, "method"], ascending=[False, True], kind="stable")["method"].iloc[0]


def _blocks(widths: list[float], fixed: float, limit: float) -> list[list[int]]:
    """Indices of columns of ``widths`` (pt, column separation included) grouped in order into blocks whose width
    with ``fixed`` (the method column) stays within ``limit`` (every block holds at least one column)."""
    blocks: list[list[int]] = [[]]
    total = fixed
    for i, w in enumerate(widths):
        if blocks[-1] and total + w > limit * SLACK:
            blocks.append([])
            total = fixed
        blocks[-1].append(i)
        total += w
    return blocks


def _tabular(head: list[str], rows: list[list[str]], gaps: set[int] = frozenset()) -> list[str]:
    """A booktabs tabular: the first column left-aligned, the others right-aligned; an ``\\addlinespace`` before
    each row index in ``gaps``."""
    lines = [r"\begin{tabular}{@{}l" + "r" * (len(head) - 1) + "@{}}", r"\toprule", " & ".join(head) + r" \\",
             r"\midrule"]
    for i, row in enumerate(rows):
        if i in gaps:
            lines.append(r"\addlinespace[2pt]")
        lines.append(" & ".join(row) + r" \\")
    return [*lines, r"\bottomrule", r"\end{tabular}"]


def _height(block: list[str]) -> float:
    """Estimated height in pt of a ``_tabular``: its rows, header lines and rules, one ``\\medskip`` above."""
    rows = sum(line.endswith(r"\\") for line in block) + block[2].count(r" \\ ")  # header lines nest " \\ "
    return (rows + 4) * LINE_PT


def _float(env: str, caption: str, label: str, blocks: list[list[str]], mark: str) -> str:
    """One float of the tabulars ``blocks`` stacked under one caption (a sentence), or several when they would be
    taller than ``FLOAT_HEIGHT_PT``: the next ones captioned "(continued)" and without a label."""
    floats: list[list[list[str]]] = [[]]
    height = 0.0
    for block in blocks:
        if floats[-1] and height + _height(block) > FLOAT_HEIGHT_PT:
            floats.append([])
            height = 0.0
        floats[-1].append(block)
        height += _height(block)
    lines = [f"% {mark}"] if mark else []
    for k, part in enumerate(floats):
        if k:
            lines.append("")
        lines += [rf"\begin{{{env}}}[t]", r"\centering", r"\footnotesize",
                  rf"\setlength{{\tabcolsep}}{{{TABCOLSEP_PT:g}pt}}"]
        lines += ([rf"\caption{{{caption}}}", rf"\label{{{label}}}"] if not k else
                  [rf"\caption{{{caption.removesuffix('.')} (continued).}}"])
        for i, block in enumerate(part):
            if i:
                lines.append(r"\par\medskip")
            lines += block
        lines.append(rf"\end{{{env}}}")
    return "\n".join(lines)


def main_table(tasks: dict[str, ReportTask], board: pd.DataFrame, pairs: pd.DataFrame, stat: dict[str, str],
               methods: dict[str, str], task_keys: dict[str, str], mark: str = "") -> str:
    """``tables/main.tex``: the headline (``stat``: at matched drift where the task has a drift budget) of every
    method on every task, ``mean ± half-width`` of the t-interval over seeds, and below it the paired difference
    to the task's ``best_reference`` (``*``: its interval excludes 0); bold: the best mean of each task. Methods
    ordered as ``REFERENCE_METHODS``, then the others by name; tasks in id order, split into blocks of one
    ``table*`` that each fit ``TEXT_WIDTH_PT``.

    Args:
        methods / task_keys: ``{name: abbreviation}`` of the abbreviated method and task names.
        mark: a comment line for the top of the file (the uncommitted-tree mark), or empty.
    """
    ids = list(tasks)
    present = set(board["method"])
    names = [m for m in REFERENCE_METHODS if m in present] + sorted(present - set(REFERENCE_METHODS))
    indexed = board.set_index(["task", "method"])
    diffs = pairs.set_index(["task", "method", "other"])
    columns = []  # per task: (header lines, [(value, Δ) per method], bold methods, width)
    for t in ids:
        metric, ref = stat[t], best_reference(board, t, stat[t])
        values, means = [], {}
        for m in names:
            if (t, m) not in indexed.index or not np.isfinite(indexed.loc[(t, m), metric]):
                values.append(("", ""))
                continue
            row = indexed.loc[(t, m)]
            means[m] = row[metric]
            value = format_interval(row[metric], row[f"{metric}_lo"], row[f"{metric}_hi"])
            if ref is None or m == ref:
                delta = "—" if m == ref else ""
            elif (t, m, ref) in diffs.index:
                d = diffs.loc[(t, m, ref)]
                delta = format_interval(d["diff"], d["diff_lo"], d["diff_hi"], signed=True) + (
                    "*" if d["excludes_zero"] else "")
            else:
                delta = "n/a"
            values.append((value, delta))
        top = max(means.values()) if means else np.nan
        bold = {m for m, v in means.items() if v == top} if len(set(means.values())) > 1 else set()
        head = [task_keys.get(t, t)] + ([f"Δ vs {methods.get(ref, ref)}"] if ref else [])
        width = max([text_width(h) for h in head] + [text_width(_display(v), m in bold) for (v, _), m in
                                                     zip(values, names)] + [text_width(_display(d)) for _, d in values])
        columns.append((head, values, bold, width + 2 * TABCOLSEP_PT))
    stub = max(text_width(methods.get(m, m)) for m in [*names, "method"]) + 2 * TABCOLSEP_PT
    blocks = []
    for block in _blocks([c[3] for c in columns], stub, TEXT_WIDTH_PT):
        depth = max(len(columns[i][0]) for i in block)
        head = [header([""] * (depth - 1) + ["method"], "l")] + [
            header(columns[i][0] + [""] * (depth - len(columns[i][0]))) for i in block]
        rows, gaps = [], set()
        for k, m in enumerate(names):
            if k:
                gaps.add(len(rows))
            rows.append([cell(methods.get(m, m))] + [cell(columns[i][1][k][0], m in columns[i][2]) for i in block])
            rows.append([""] + [cell(columns[i][1][k][1]) for i in block])
        blocks.append(_tabular(head, rows, gaps))
    caption = (r"Headline per method and task (mean $\pm$ half-width of the 95\% t-interval over seeds) and, below "
               r"it, the paired difference to the task's best reference method; Section~\ref{sec:tables-legend} "
               "defines every entry.")
    return _float("table*", caption, "tab:main", blocks, mark)


def task_detail_table(task: ReportTask, cells: pd.DataFrame, best: dict[str, set], methods: dict[str, str],
                      key: str | None = None, mark: str = "") -> str:
    """``tables/<task>.tex``: ``task_table``'s cells (every metric of every method) as one ``table`` whose columns
    are split into stacked blocks that each fit ``COLUMN_WIDTH_PT``; the seeds and oracle queries move to the caption
    when every run has the same; bold as in ``task_table``. ``key``: the task's abbreviation in the main table, if
    any (named in the caption)."""
    said = []
    queries = metric_label("cost/queries")
    for column, what in (("seeds", "seeds"), (queries, "oracle queries")):
        if column in cells and cells[column].nunique() == 1 and len(cells) > 1:
            said.append(f"{tex(cells[column].iloc[0].removesuffix(' ± 0'))} {what}")
            cells = cells.drop(columns=column)
    names = cells["method"].tolist()
    stub = max(text_width(methods.get(m, m)) for m in [*names, "method"]) + 2 * TABCOLSEP_PT
    room = COLUMN_WIDTH_PT * SLACK - stub
    columns = []  # (header lines, width)
    for label in cells.columns[1:]:
        widest = max(text_width(_display(v), m in best.get(label, ())) for v, m in zip(cells[label], names))
        lines = wrap(label, max(widest, min(room - 2 * TABCOLSEP_PT, 60.0)))
        columns.append((lines, max(widest, *map(text_width, lines)) + 2 * TABCOLSEP_PT))
    labels = list(cells.columns[1:])
    blocks = []
    for block in _blocks([w for _, w in columns], stub, COLUMN_WIDTH_PT):
        depth = max(len(columns[i][0]) for i in block)
        head = [header([""] * (depth - 1) + ["method"], "l")] + [
            header(columns[i][0] + [""] * (depth - len(columns[i][0]))) for i in block]
        rows = [[cell(methods.get(m, m))] + [cell(cells[labels[i]].iloc[k], m in best.get(labels[i], ()))
                                               for i in block] for k, m in enumerate(names)]
        blocks.append(_tabular(head, rows))
    budget = (f", path KL $\\le$ {task.drift_budget:g} nats for matched drift" if task.drift_budget is not None
              else "")
    runs = f" ({' and '.join(said)} per run{budget})" if said else (f" ({budget.lstrip(', ')})" if budget else "")
    named = f" ({tex(key)} in Table~\\ref{{tab:main}})" if key else ""
    caption = f"Every metric of {tex(task.id)}{named}{runs}; Section~\\ref{{sec:tables-legend}} defines them."
    return _float("table", caption, f"tab:{task.id}", blocks, mark)


def legend(definitions: list[tuple[str, str]], keys: list[tuple[str, dict[str, str]]], commits: list[str],
           dirty: list[str]) -> str:
    """``tables/legend.tex``: a ``\\paragraph`` block (label ``sec:tables-legend``, which every caption cites) with
    each definition once, the abbreviation keys and the commits of the runs.

    Args:
        definitions: ``(term, definition)`` in plain text (escaped here).
        keys: ``(what, {name: abbreviation})``, e.g. ``("Methods", {...})``; empty keys are left out.
        commits: the distinct commits of the runs.
        dirty: the commits of uncommitted trees the report was made from (marked), or none.
    """
    lines = [r"\paragraph{Reading the tables.}\label{sec:tables-legend}"]
    lines += [rf"\emph{{{tex(term)}}}: {tex(text)}." for term, text in definitions]
    for what, key in keys:
        if key:
            lines.append(rf"\emph{{{tex(what)}}}: " + "; ".join(f"{tex(short)} = {tex(name)}"
                                                                 for name, short in key.items()) + ".")
    if commits:
        lines.append(r"\emph{Commits of the runs}: " + ", ".join(rf"\texttt{{{tex(c)}}}" for c in commits) + ".")
    if dirty:
        lines.append(r"\emph{Made from an uncommitted tree}: " + ", ".join(rf"\texttt{{{tex(c)}}}" for c in dirty)
                     + ".")
    return "\n\n".join(lines)


def placement_note() -> str:
    """The placement rule in one sentence, for the legend's reader."""
    return ("the main table is a table* (both columns of a two-column paper, the text width of a one-column one); "
            "each per-task table fits one column of a two-column paper")
