"""What `citune run` prints at the end: the score matrix and the metrics."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table


def _fmt(v, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def matrix_table(metrics: dict) -> Table:
    tasks = metrics["tasks"]
    table = Table(title="ROUGE-L ×100: row = after stage, column = task", title_justify="left")
    table.add_column("stage")
    for name in tasks:
        table.add_column(name, justify="right")
    table.add_row("0 (base)", *[_fmt(v) for v in metrics.get("base_row") or [None] * len(tasks)])
    for i, row in enumerate(metrics["matrix"], 1):
        table.add_row(f"{i} {tasks[i - 1]}", *[_fmt(v) for v in row])
    return table


def metrics_table(metrics: dict) -> Table:
    table = Table(title="Continual-learning metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [("final AP", "ap"), ("BWT", "bwt"), ("FWT", "fwt"), ("forgetting", "forgetting"),
            ("final Relative Gain", "relative_gain"), ("RG mean over stages", "rg_mean"),
            ("RG std over stages", "rg_std"), ("P-score (held-out)", "p_score"),
            ("P-score change from base", "p_score_change"), ("V-score", "v_score")]
    for label, key in rows:
        table.add_row(label, _fmt(metrics.get(key), 2))
    return table


def print_run_summary(metrics: dict, run_dir: Path) -> None:
    console = Console()
    console.print(matrix_table(metrics))
    console.print(metrics_table(metrics))
    console.print(f"Run directory: {run_dir}  (report: {Path(run_dir) / 'report.md'})")
