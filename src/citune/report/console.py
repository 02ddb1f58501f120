"""Rich summaries for the terminal (the CLI prints these after a run)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from citune.report.doc import fmt, fmt_pm

HEADLINE = [
    ("final AP", "ap", False),
    ("BWT", "bwt", True),
    ("FWT", "fwt", True),
    ("forgetting", "forgetting", False),
    ("final RG", "relative_gain", False),
    ("P-score", "p_score", False),
    ("P-score change", "p_score_change", True),
    ("V-score", "v_score", False),
]


def run_summary_table(metrics: dict) -> Table:
    table = Table(title="CL metrics", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, key, signed in HEADLINE:
        table.add_row(label, fmt(metrics.get(key), signed=signed))
    table.add_row("RG mean ± std", fmt_pm(metrics.get("rg_mean"), metrics.get("rg_std")))
    return table


def print_run_summary(metrics: dict, run_dir: str | Path, console: Console | None = None) -> None:
    """The headline metrics of a run and where its report is."""
    console = console or Console()
    console.print(run_summary_table(metrics or {}))
    report = Path(run_dir) / "report.html"
    where = report if report.is_file() else Path(run_dir)
    console.print(f"Results: {where}")
