"""`citune compare`: one stream under several replay strategies and seeds, then a side-by-side table.

Each (strategy, seed) gets `PARENT/<strategy>-seed<seed>`. A run whose manifest marks every
stage done (with metrics.json written) and whose config matches is skipped; a partly done run
is resumed; so a killed comparison is resumed by running the same command again.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from citune.config import PRESENTATION, config_difference, load_config, run_identity
from citune.errors import InputError
from citune.io import make_dir, read_json
from citune.progress import say
from citune.report.comparison import (
    build_comparison_report, comparison_table, default_baseline, interval_sentence, strategy_columns, write_comparison,
)
from citune.report.rundata import load_run, run_dir_name
from citune.terminal import terminal_table

__all__ = ["run_compare", "comparison_table", "default_baseline", "write_comparison", "render_comparison",
           "print_comparison"]


def run_dir_for(parent: Path, strategy: str, seed: int) -> Path:
    return Path(parent) / run_dir_name(strategy, seed)


def is_finished(run_dir: Path, cfg_dict: dict) -> bool:
    """Every stage done, metrics.json written, and the stored config equals `cfg_dict` up to
    presentation settings (`--quiet` on one invocation and not the other still skips the run)."""
    run = load_run(run_dir)
    return (run.complete and (run_dir / "metrics.json").is_file()
            and run_identity(run.config) == run_identity(cfg_dict))


def run_compare(config_path: str | None, strategies: list[str], seeds: list[int], parent: Path,
                overrides: list[str], quiet: bool = False, report: bool = True, baseline: str | None = None) -> Path:
    """Run (or resume, or skip) every strategy x seed, then (unless `report` is false) write
    comparison.json, comparison.md and the comparison report into `parent`, with each strategy's paired
    difference from `baseline` (default: `random` when compared, else the first strategy); return `parent`."""
    if not strategies or not seeds:
        raise InputError(f"--{'strategies' if not strategies else 'seeds'} names nothing to compare", "command line")
    configs = {run_dir_for(parent, strategy, seed): load_config(
        config_path, [*overrides, f"replay.strategy={strategy}", f"seed={seed}"])
        for strategy in strategies for seed in seeds}
    from citune.report import build_report as build_run_report
    from citune.runs.runner import check_inputs, run_stream  # torch loads only here

    checked = set()
    for run_dir, cfg in configs.items():  # every input checked before anything is written or trained
        key = (cfg.seed if cfg.data.split_by_run_seed else None, cfg.replay.strategy)
        if key not in checked:  # the stream differs between runs only by the seed, if split_by_run_seed
            check_inputs(cfg)
            checked.add(key)
        _check_stored_config(run_dir, cfg)
    make_dir(parent)
    for i, (run_dir, cfg) in enumerate(configs.items(), 1):
        label = f"[{i}/{len(configs)}] {cfg.replay.strategy} seed {cfg.seed}"
        if is_finished(run_dir, cfg.to_dict()):
            say(f"{label}: done already, skipped ({run_dir})", quiet)
            continue
        resume = (run_dir / "manifest.json").is_file()
        say(f"{label}: {'resuming' if resume else 'running'} → {run_dir}", quiet)
        run_stream(cfg, run_dir, resume=resume, write_report=build_run_report)
    run_dirs = list(configs)
    if report:
        build_comparison_report(parent, run_dirs, baseline=baseline or default_baseline(strategies))
    return parent


def _check_stored_config(run_dir: Path, cfg) -> None:
    """A run already in `run_dir` must have `cfg`'s config; it then continues with its own presentation
    settings (`--quiet` given to one invocation and not the other)."""
    if not (run_dir / "manifest.json").is_file():
        return
    stored = load_run(run_dir).config
    diff = config_difference(stored, cfg.to_dict())
    if diff:
        raise InputError(f"this run was made with another config ({diff}); choose another -o or remove the run "
                         "directory", str(run_dir / "config.yaml"))
    for key in PRESENTATION["run"]:
        if key in (stored.get("run") or {}):
            setattr(cfg.run, key, stored["run"][key])


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

