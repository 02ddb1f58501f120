"""Errors that the CLI turns into one clear line and exit code 2."""
from __future__ import annotations


class InputError(Exception):
    """Bad input from the user: a config, a data file or an argument.

    The message names the file, the record (line or index) and the problem.
    """

    def __init__(self, problem: str, file: str | None = None, record: str | int | None = None):
        self.problem = problem
        self.file = file
        self.record = record
        super().__init__(self.line())

    def line(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.record is not None:
            where.append(f"record {self.record}" if isinstance(self.record, int) else str(self.record))
        return (": ".join(where) + ": " if where else "") + self.problem


class TrainingDiverged(RuntimeError):
    """A NaN or infinite loss: the stage stops, finished stages stay resumable."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM: the work in progress is abandoned, what is finished stays (a BaseException, like
    KeyboardInterrupt, so that no `except Exception` swallows it). `resume` says how to continue."""

    def __init__(self, signum: int, resume: str | None = None):
        self.signum = signum
        self.resume = resume
        super().__init__(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
