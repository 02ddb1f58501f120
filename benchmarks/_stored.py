"""The resumable quality benchmark shared by superni_quality.py and trace_quality.py: `citune compare`
runs, seed-major (optionally a first group of strategies over every seed before the rest), each
packed after it finishes into one archive under the results folder
(citune.runs.archive), the comparison rebuilt there over every run stored so far, and benchmark.json
keeping each invocation's command, commit, machine, wall time and CPU seconds. Running the same
command again skips the runs stored with the same config, even when their big run directories are
gone (a new machine), and resumes a partial run from its first stage not done."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from _common import ROOT, machine


def git_commit() -> str | None:
    """The checkout's commit (with '+changes' when the tree differs), so results name their code."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def yaml_list(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def store_run(run: Path, dest: Path) -> Path | None:
    """Pack a finished run into dest/<run name>.run.json.gz (replacing an earlier archive, and a run
    directory of the same name that an older version of this script copied there); return the archive."""
    from citune.runs.archive import archive_path_for, verify_archive, write_archive

    if not (run / "manifest.json").is_file():
        return None
    archive = write_archive(run, archive_path_for(dest / run.name))
    problems = verify_archive(run, archive)
    if problems:
        raise RuntimeError(f"{archive} does not restore {run}: " + "; ".join(problems))
    if (dest / run.name / "manifest.json").is_file():
        shutil.rmtree(dest / run.name)
    return archive


def stored_run(dest: Path, strategy: str, seed: int) -> Path:
    """The stored run of (strategy, seed) under dest: its archive, else a run directory (older layout)."""
    from citune.runs.archive import archive_path_for
    from citune.runs.rundir import run_dir_for

    stored = run_dir_for(dest, strategy, seed)
    archive = archive_path_for(stored)
    return archive if archive.is_file() else stored


def stored_finished(dest: Path, config: Path, overrides: list[str], strategy: str, seed: int) -> bool:
    """The run is stored under dest, finished, with this config: an earlier session made it."""
    from citune.config import load_config
    from citune.runs.archive import open_run
    from citune.runs.matrix import is_finished

    stored = stored_run(dest, strategy, seed)
    if not stored.exists():
        return False
    cfg = load_config(config, [*overrides, f"replay.strategy={strategy}", f"seed={seed}"])
    with open_run(stored) as run_dir:
        return (run_dir / "manifest.json").is_file() and is_finished(run_dir, cfg.to_dict())


def stored_runs(dest: Path, strategies: list[str]) -> list[Path]:
    """Every run stored under dest (archives, and run directories of the older layout), by the
    strategy list and then seed: the comparison covers the runs of earlier sessions too, whose big run
    directories may be gone."""
    from citune.runs.archive import find_runs, run_name
    from citune.runs.rundir import parse_run_dir_name

    def key(d: Path):
        strategy, seed = parse_run_dir_name(run_name(d))
        rank = strategies.index(strategy) if strategy in strategies else len(strategies)
        return rank, strategy or "", seed or 0

    return sorted(find_runs(dest), key=key)


@contextmanager
def restored(dest: Path, runs: list[Path]):
    """The run directories of `runs` (archives under dest restored in place as dest/<run name>/, so the
    comparison names them as before), removed again on exit."""
    from citune.runs.archive import is_archive, run_name, unpack_run

    made, dirs = [], []
    try:
        for run in runs:
            if not is_archive(run):
                dirs.append(run)
                continue
            target = dest / run_name(run)
            if target.exists():  # left by an interrupted rebuild (or an older copy): the archive wins
                shutil.rmtree(target)
            made.append(target)
            dirs.append(unpack_run(run, target))
        yield dirs
    finally:
        for target in made:
            shutil.rmtree(target, ignore_errors=True)


def rebuild_comparison(dest: Path, order: list[str]) -> None:
    """The comparison over every run stored under dest, its differences taken from random replay once
    random is stored (not from whichever strategy was stored first, which comparison.json would keep)."""
    from citune.report import build_comparison_report
    from citune.report.comparison import default_baseline
    from citune.runs.archive import run_name
    from citune.runs.rundir import parse_run_dir_name

    runs = stored_runs(dest, order)
    strategies = list(dict.fromkeys(parse_run_dir_name(run_name(r))[0] for r in runs))
    with restored(dest, runs) as run_dirs:
        build_comparison_report(dest, run_dirs, baseline=default_baseline(strategies))


def schedule(strategies: list[str], seeds: list[int], first: list[str] = ()) -> list[tuple[int, str]]:
    """The (seed, strategy) pairs in the order they run: the strategies named in `first` over every seed,
    then the others over every seed; each part seed-major, so that every strategy has a first result
    early."""
    parts = [[s for s in strategies if s in first], [s for s in strategies if s not in first]]
    return [(seed, s) for part in parts for seed in seeds for s in part]


def run_stored(config: Path, overrides: list[str], strategies: list[str], seeds: list[int], parent: Path,
               dest: Path, info: dict, commit: str | None, quiet: bool, report_order: list[str] | None = None,
               first: list[str] = ()) -> None:
    """Run every (seed, strategy) not stored under dest yet, in `schedule`'s order; store each run and
    rebuild the comparison as it finishes (a stopped session keeps them); with nothing left to run,
    rebuild the comparison of what is stored. `info` (the benchmark's scale, stream, strategies) goes
    into dest/benchmark.json with this invocation appended to the earlier ones."""
    from citune.compare import run_compare
    from citune.engine.trainer import available_cores
    from citune.io import atomic_write_text
    from citune.runs.rundir import run_dir_for

    invocation = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "commit": commit,
                  "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(threads=available_cores())}
    previous = dest / "benchmark.json"
    if previous.is_file():  # a benchmark spanning sessions keeps every invocation's command and machine
        info["invocations"] = json.loads(previous.read_text(encoding="utf-8")).get("invocations", [])
    info.setdefault("invocations", []).append(invocation)
    started = time.perf_counter()
    order = list(dict.fromkeys([*(report_order or []), *strategies]))
    ran = False

    def record() -> None:  # this invocation's wall time and CPU seconds (every thread of this process)
        invocation["elapsed_seconds"] = round(time.perf_counter() - started, 1)
        invocation["cpu_seconds"] = round(time.process_time(), 1)
        dest.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dest / "benchmark.json", json.dumps(info, indent=2) + "\n")

    def stop(signum, _frame):  # a scheduler's SIGTERM ends the invocation through `finally`, as Ctrl-C does
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise SystemExit(128 + signum)

    previous_handler = signal.signal(signal.SIGTERM, stop)
    try:
        for seed, strategy in schedule(strategies, seeds, first):
            if stored_finished(dest, config, overrides, strategy, seed):
                print(f"{strategy} seed {seed}: stored already in {dest}, skipped", flush=True)
                continue
            run_compare(str(config), [strategy], [seed], parent, overrides, quiet=quiet, report=False)
            dest.mkdir(parents=True, exist_ok=True)
            store_run(run_dir_for(parent, strategy, seed), dest)
            rebuild_comparison(dest, order)
            ran = True
            record()
        if not ran and stored_runs(dest, order):  # all stored already: the comparison as this code makes it
            rebuild_comparison(dest, order)
    finally:  # an interrupted invocation keeps its CPU seconds too (the stages it finished resume)
        signal.signal(signal.SIGTERM, previous_handler)
        record()


def exit_code(benchmark, argv: list[str] | None = None) -> int:
    """A benchmark's exit code: bad input is one line `error: <file>: <key>: <problem>` and exit 2."""
    from citune.errors import InputError

    try:
        return benchmark(argv)
    except InputError as e:
        print(f"error: {e.line()}", file=sys.stderr)
        return 2
