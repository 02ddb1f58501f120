"""Rich progress bars for stages, training and evaluation; silent in quiet mode (CI)."""
from __future__ import annotations

import os
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def is_quiet(quiet: bool = False) -> bool:
    return quiet or os.environ.get("CITUNE_QUIET") == "1" or not console.is_terminal and os.environ.get("CI") == "true"


class _Silent:
    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass

    def advance(self, *a, **k):
        pass

    def remove_task(self, *a, **k):
        pass


@contextmanager
def progress_bars(quiet: bool = False):
    if is_quiet(quiet):
        yield _Silent()
        return
    bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)
    with bars:
        yield bars


def say(message: str, quiet: bool = False) -> None:
    if not is_quiet(quiet):
        console.print(message)
