"""The run matrix of `citune compare`: one stream under several strategies and seeds, one run directory
each (`PARENT/<strategy>-seed<seed>`). A run whose stages are all done (with metrics.json written) and
whose config matches is skipped; a partly done run is resumed; so a killed comparison goes on when the
same command is run again."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from citune.config import PRESENTATION, Config, config_difference, load_config, run_identity
from citune.errors import InputError
from citune.io import make_dir
from citune.progress import say
from citune.runs.rundata import load_run
from citune.runs.rundir import RunDir, run_dir_for


def matrix_configs(config_path: str | None, strategies: list[str], seeds: list[int], parent: Path,
                   overrides: list[str]) -> dict[Path, Config]:
    """Run directory -> config, for every strategy x seed."""
    if not strategies or not seeds:
        raise InputError(f"--{'strategies' if not strategies else 'seeds'} names nothing to compare", "command line")
    return {run_dir_for(parent, strategy, seed): load_config(
        config_path, [*overrides, f"replay.strategy={strategy}", f"seed={seed}"])
        for strategy in strategies for seed in seeds}


def is_finished(run_dir: Path, cfg_dict: dict) -> bool:
    """Every stage done, metrics.json written, and the stored config equals `cfg_dict` up to
    presentation settings (`--quiet` on one invocation and not the other still skips the run)."""
    run = load_run(run_dir)
    return (run.complete and RunDir(run_dir).metrics_path.is_file()
            and run_identity(run.config) == run_identity(cfg_dict))


def run_matrix(configs: dict[Path, Config], parent: Path, quiet: bool = False,
               write_report: Callable[[Path], object] | None = None) -> list[Path]:
    """Run (or resume, or skip) every run of `configs`, every input checked first; return the run
    directories. `write_report(run_dir)` is called when a run finishes."""
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
        resume = RunDir(run_dir).manifest_path.is_file()
        say(f"{label}: {'resuming' if resume else 'running'} → {run_dir}", quiet)
        run_stream(cfg, run_dir, resume=resume, write_report=write_report)
    return list(configs)


def _check_stored_config(run_dir: Path, cfg: Config) -> None:
    """A run already in `run_dir` must have `cfg`'s config; it then continues with its own presentation
    settings (`--quiet` given to one invocation and not the other)."""
    if not RunDir(run_dir).manifest_path.is_file():
        return
    stored = load_run(run_dir).config
    diff = config_difference(stored, cfg.to_dict())
    if diff:
        raise InputError(f"this run was made with another config ({diff}); choose another -o or remove the run "
                         "directory", str(RunDir(run_dir).config_path))
    for key in PRESENTATION["run"]:
        if key in (stored.get("run") or {}):
            setattr(cfg.run, key, stored["run"][key])
