"""The one place that draws tables in the terminal (rich): run summaries, comparisons, file scores, the
config keys. Cells are plain text, never rich markup ("[lo, hi]" stays as written)."""
from __future__ import annotations

from typing import Any, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text


def terminal_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
                   right_from: int = 1) -> Table:
    """A table whose columns from `right_from` on are right-aligned (numbers); None cells print empty."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if i >= right_from else "left")
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    return table


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
                right_from: int = 1, console: Console | None = None) -> None:
    (console or Console()).print(terminal_table(headers, rows, title, right_from))
