"""`citune score FILE.jsonl`: score a JSONL file of predictions with the benchmarks' scorers.

Each non-blank line is ``{"prediction": str, "references": str | [str], "metric": optional name}``;
a line's metric is its own ``metric``, else the command's ``--metric``, else ``rougeL``. Every line
is validated before anything is scored or written; a bad one raises
:class:`citune.errors.InputError` naming the file and ``line N``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple, Optional

from citune.errors import InputError
from citune.evaluation.scores import SCORER_NAMES, score

DEFAULT_METRIC = "rougeL"


class FileScores(NamedTuple):
    n: int  # lines scored
    scores: dict[str, float]  # metric -> mean x100, in order of first use
    counts: dict[str, int]  # metric -> lines that use it

    def as_json(self) -> dict:
        return {"n": self.n, "scores": self.scores}


def _unknown(name: str) -> str:
    return f"unknown metric '{name}' (known: {', '.join(SCORER_NAMES)})"


def _parse_line(text: str, default: str, file: str, n: int) -> tuple[str, str, list[str]]:
    def bad(problem: str):
        return InputError(problem, file, f"line {n}")

    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise bad(f"not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise bad(f"not a JSON object (a {type(row).__name__})")
    if "prediction" not in row:
        raise bad("missing 'prediction'")
    prediction = row["prediction"]
    if not isinstance(prediction, str):
        raise bad(f"'prediction' must be a string, not {type(prediction).__name__}")
    if "references" not in row:
        raise bad("missing 'references'")
    refs = row["references"]
    if isinstance(refs, str):
        refs = [refs]
    elif not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise bad("'references' must be a string or a list of strings")
    if not refs:
        raise bad("'references' is an empty list")
    metric = row.get("metric")
    if metric is None:
        metric = default
    elif not isinstance(metric, str):
        raise bad(f"'metric' must be a string, not {type(metric).__name__}")
    if metric not in SCORER_NAMES:
        raise bad(_unknown(metric))
    return metric, prediction, refs


def score_file(path: str | Path, metric: Optional[str] = None) -> FileScores:
    """The mean score per metric over the lines of `path` that use it."""
    path = Path(path)
    default = metric or DEFAULT_METRIC
    if default not in SCORER_NAMES:
        raise InputError(_unknown(default), "--metric")
    if not path.is_file():
        raise InputError("file not found", str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", str(path)) from None
    rows = [_parse_line(line, default, str(path), n)
            for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise InputError("no lines to score (the file is empty)", str(path))
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name, prediction, refs in rows:
        sums[name] = sums.get(name, 0.0) + score(name, prediction, refs)
        counts[name] = counts.get(name, 0) + 1
    return FileScores(len(rows), {k: round(s / counts[k], 4) for k, s in sums.items()}, counts)


def render_file_scores(result: FileScores, title: str = ""):
    from citune.terminal import terminal_table

    rows = [(name, result.counts[name], f"{mean:.2f}") for name, mean in result.scores.items()]
    return terminal_table(["metric", "lines", "mean (x100)"], rows, title or None)
