"""`citune compare`: the run matrix (runs/matrix.py: one stream under several strategies and seeds, resumable),
then the side-by-side table, its intervals and the comparison report."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from citune.io import read_json
from citune.report.comparison import (
    build_comparison_report, comparison_table, default_baseline, interval_sentence, strategy_columns, write_comparison,
)
from citune.runs.matrix import matrix_configs, run_matrix
from citune.terminal import terminal_table

__all__ = ["run_compare", "comparison_table", "default_baseline", "write_comparison", "render_comparison",
           "print_comparison"]


def run_compare(config_path: str | None, strategies: list[str], seeds: list[int], parent: Path,
                overrides: list[str], quiet: bool = False, report: bool = True, baseline: str | None = None) -> Path:
    """Run (or resume, or skip) every strategy x seed, then (unless `report` is false) write
    comparison.json, comparison.md and the comparison report into `parent`, with each strategy's paired
    difference from `baseline` (default: `random` when compared, else the first strategy); return `parent`."""
    from citune.report import build_report as build_run_report

    configs = matrix_configs(config_path, strategies, seeds, parent, overrides)
    run_dirs = run_matrix(configs, parent, quiet, write_report=build_run_report)
    if report:
        build_comparison_report(parent, run_dirs, baseline=baseline or default_baseline(strategies))
    return parent


def render_comparison(rows: list[dict], title: str = "citune comparison", columns: slice = slice(None)) -> Table:
    """A rich table of `comparison_table` rows (or comparison.json's `strategies`); `columns`: which
    strategies' columns to show (all by default)."""
    headers, lines = strategy_columns(rows)
    keep = [0, *range(1, len(headers))[columns]]
    return terminal_table([headers[i] for i in keep], [[line[i] for i in keep] for line in lines], title)


def _column_groups(rows: list[dict], width: int) -> list[slice]:
    """Consecutive groups of strategy columns whose table fits in `width` characters (one at least)."""
    headers, lines = strategy_columns(rows)
    widths = [max(len(str(line[i])) for line in [headers, *lines]) + 3 for i in range(len(headers))]
    groups, start, used = [], 0, widths[0] + 1
    for i, w in enumerate(widths[1:]):
        if i > start and used + w > width:
            groups.append(slice(start, i))
            start, used = i, widths[0] + 1
        used += w
    return groups + [slice(start, len(widths) - 1)]


def print_comparison(parent_or_rows: Path | list[dict], console: Console | None = None) -> None:
    """Print the comparison of a compare parent directory (its comparison.json) or of table rows; a
    table wider than the terminal is printed in parts of a few strategies each."""
    console = console or Console()
    data = {"strategies": parent_or_rows} if isinstance(parent_or_rows, list) else None
    if data is None:
        parent = Path(parent_or_rows)
        parent = parent.parent if parent.is_file() else parent
        data = read_json(parent / "comparison.json")
    rows = data["strategies"]
    for group in _column_groups(rows, console.width):
        console.print(render_comparison(rows, columns=group))
    if data.get("interval"):
        console.print(interval_sentence(data), markup=False, highlight=False)
    if not isinstance(parent_or_rows, list):
        console.print(f"Comparison: {parent / 'comparison.md'}, report: {parent / 'report.html'}")

