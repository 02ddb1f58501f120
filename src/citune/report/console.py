"""Rich summaries for the terminal: what `citune run` prints at the end (the score matrix and the
headline metrics) and where the run's report is."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from citune.report.doc import fmt, headline_rows
from citune.terminal import terminal_table



def matrix_table(metrics: dict) -> Table:
    """The score matrix: the base model's row, then one row after each stage."""
    tasks = metrics.get("tasks") or []
    scorers = metrics.get("scorers") or {}
    named = any(scorers.get(t, "rougeL") != "rougeL" for t in tasks)
    title = "score ×100 (each task's scorer under its name)" if named else "ROUGE-L ×100"
    headers = ["stage", *(f"{name}\n{scorers.get(name, 'rougeL')}" if named else name for name in tasks)]
    rows = [["0 (base)", *[fmt(v, 1) for v in metrics.get("base_row") or [None] * len(tasks)]]]
    rows += [[f"{i} {tasks[i - 1]}", *[fmt(v, 1) for v in row]] for i, row in enumerate(metrics.get("matrix") or [], 1)]
    return terminal_table(headers, rows, f"{title}: row = after stage, column = task")


def run_summary_table(metrics: dict) -> Table:
    return terminal_table(["metric", "value"], [(label, value) for label, value, _ in headline_rows(metrics)],
                          "CL metrics")


def print_run_summary(metrics: dict, run_dir: str | Path, console: Console | None = None,
                      matrix: bool = False) -> None:
    """The headline metrics of a run (after its score matrix when `matrix`) and where its report is."""
    console = console or Console()
    metrics = metrics or {}
    if matrix and metrics.get("tasks"):
        console.print(matrix_table(metrics))
    console.print(run_summary_table(metrics))
    report = next((Path(run_dir) / n for n in ("report.html", "report.md") if (Path(run_dir) / n).is_file()), None)
    console.print(f"Run directory: {run_dir}" + (f"  (report: {report})" if report else ""))
