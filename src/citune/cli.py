"""The `citune` command line: parse, load the config, call the library."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from citune.errors import InputError, Interrupted, TrainingDiverged

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Continual instruction tuning of LLMs: InsCL, KPIG, baselines, CL metrics, reports.")


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks (accepted anywhere on the line).")):
    """citune: continual instruction tuning."""


def _split_args(config: Optional[str], overrides: Optional[List[str]]) -> tuple[Optional[str], list[str]]:
    overrides = list(overrides or [])
    if config is not None and "=" in config and not Path(config).exists():
        return None, [config, *overrides]
    return config, overrides


def _load(config: Optional[str], overrides: list[str], stored: bool = False):
    from citune.config import load_config

    return load_config(config, overrides, stored)


@app.command()
def run(
    config: Optional[str] = typer.Argument(None, help="YAML config; the embedded default when omitted."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. replay.strategy=random"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the first stage not done."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Run a continual instruction-tuning stream end to end."""
    config, overrides = _split_args(config, overrides)
    if quiet:
        overrides.append("run.quiet=true")
    stored = resume and config is None and out is not None and (out / "config.yaml").is_file()
    if stored:
        config = str(out / "config.yaml")
    cfg = _load(config, overrides, stored)
    # imported after the config is checked: they take seconds, and a mistake in the config should not wait for them
    from accelerate import PartialState

    from citune.report import build_report
    from citune.report.console import print_run_summary
    from citune.runs.runner import run_stream

    out = out or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.replay.strategy}"
    try:
        metrics = run_stream(cfg, out, resume=resume, write_report=build_report)
    except Interrupted as e:
        e.resume = (f"finished stages are kept in {out}; continue with: citune run -o {out} --resume"
                    if (out / "manifest.json").is_file() else "nothing was written; run the same command again")
        raise
    if PartialState().is_main_process:  # under `accelerate launch`, one summary, not one per rank
        print_run_summary(metrics, out, matrix=True)


@app.command()
def plan(
    config: Optional[str] = typer.Argument(None, help="YAML config."),
    overrides: Optional[List[str]] = typer.Argument(None),
    as_json: Optional[Path] = typer.Option(None, "--json", help="Also write the plan as JSON to this file."),
):
    """Dry run: stream, stage sizes and replay quotas per stage, without training."""
    from citune.replay.planning import plan_stream, render_plan
    from citune.models.loading import check_model_path
    from citune.data import build_stream
    from citune.io import output_file, write_json
    from citune.paths import cache_root

    config, overrides = _split_args(config, overrides)
    cfg = _load(config, overrides)
    if as_json:
        output_file(as_json)
    check_model_path(cfg.model)
    stream = build_stream(cfg)
    plans = plan_stream(cfg, stream, cache_root(cfg.run.cache_dir))
    print(_recipe(cfg))
    print(render_plan(plans))
    if as_json:
        write_json(as_json, plans)


def _recipe(cfg) -> str:
    """The training recipe in one line, as `plan` shows it before the stages."""
    t, m = cfg.train, cfg.model
    batch = f"{t.batch_size} per step" + (f" x {t.grad_accum} accumulated = {t.batch_size * t.grad_accum}"
                                          if t.grad_accum > 1 else "")
    return (f"Recipe: {m.name} ({m.finetune} fine-tuning, {m.dtype} weights, mixed precision {t.mixed_precision}"
            f"{', gradient checkpointing' if t.gradient_checkpointing else ''}), {t.epochs} epoch(s) per stage, "
            f"lr {t.lr:g} cosine with {t.warmup_ratio:g} warm-up, weight decay {t.weight_decay:g}, batch {batch}, "
            f"max length {t.max_length}; replay {cfg.replay.strategy}, {cfg.replay.per_task} per previous task")


@app.command()
def compare(
    config: Optional[str] = typer.Argument(None, help="YAML config."),
    overrides: Optional[List[str]] = typer.Argument(None),
    strategies: str = typer.Option("none,random,inscl,kpig", "--strategies"),
    seeds: str = typer.Option("1", "--seeds"),
    out: Path = typer.Option(Path("runs/compare"), "-o", "--out"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Strategy the paired differences are from (default: random, else the first)."),
):
    """The same stream under several strategies and seeds, then a side-by-side table and report, with
    95 % paired-bootstrap intervals and each strategy's difference from the baseline."""
    from citune.compare import default_baseline, print_comparison, run_compare
    from citune.replay import get_strategy

    config, overrides = _split_args(config, overrides)
    names = [s.strip() for s in strategies.split(",") if s.strip()]
    base = _load(config, overrides)
    for name in names:
        get_strategy(name, base)
    if baseline is not None and baseline not in names:
        raise InputError(f"--baseline '{baseline}' is not one of --strategies ({', '.join(names)})", "command line")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds '{seeds}' is not a comma-separated list of integers", "command line") from None
    if quiet:
        overrides.append("run.quiet=true")
    parent = run_compare(config, names, seed_list, out, overrides, quiet=quiet,
                         baseline=baseline or default_baseline(names))
    print_comparison(parent)


@app.command()
def report(run_dirs: List[Path] = typer.Argument(..., help="Run directories (or a compare parent).")):
    """Regenerate report.md / report.html from stored results."""
    from citune.report import build_comparison_report, build_report

    for d in run_dirs:
        if not (d / "manifest.json").is_file() and not (d / "comparison.json").is_file():
            raise InputError("not a run directory (no manifest.json) nor a comparison (no comparison.json)", str(d))
    if len(run_dirs) == 1 and (run_dirs[0] / "manifest.json").is_file():
        print(build_report(run_dirs[0]))
        return
    if len(run_dirs) == 1:
        parent = run_dirs[0]
        dirs = sorted(p.parent for p in parent.glob("*/manifest.json"))
    else:
        parent, dirs = run_dirs[0].parent, run_dirs
    print(build_comparison_report(parent, dirs))


@app.command()
def keys(section: Optional[str] = typer.Argument(None, help="Only keys under this one, e.g. replay.kpig.")):
    """List every config key with its type, default and description."""
    from citune.config import describe_keys
    from citune.terminal import print_table

    rows = [r for r in describe_keys() if section is None or r[0] == section or r[0].startswith(section + ".")]
    if not rows:
        raise InputError(f"no config key '{section}'", "command line")
    print_table(["key", "type", "default", "description"], rows, right_from=4)


@app.command()
def keyparts(config: Optional[str] = typer.Argument(None), overrides: Optional[List[str]] = typer.Argument(None)):
    """Show each task's instructions with KPIG's key parts marked."""
    from rich.console import Console

    from citune.data import build_stream
    from citune.paths import cache_root
    from citune.replay.kpig.keyparts import keyparts_report

    config, overrides = _split_args(config, overrides)
    cfg = _load(config, overrides)
    Console().print(keyparts_report(cfg, build_stream(cfg), cache_root(cfg.run.cache_dir)))


@app.command()
def score(
    target: str = typer.Argument(..., help="A JSONL file of {prediction, references, metric?} lines, or a run directory."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Scorer of lines without a 'metric' (default rougeL)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write {n, scores} as JSON to this file."),
):
    """Score predictions with the benchmarks' scorers: the mean (x100) of each metric. On a run
    directory: rescore every stored prediction, rewrite eval.json and metrics.json, rebuild the report."""
    if Path(target).is_dir():
        _rescore(Path(target), metric, json_out)
        return
    from rich.console import Console

    from citune.evaluation.score_file import render_file_scores, score_file
    from citune.io import output_file, write_json

    if json_out:
        output_file(json_out)
    result = score_file(target, metric)
    Console().print(render_file_scores(result, title=f"{target}: {result.n} lines"))
    if json_out:
        write_json(json_out, result.as_json())


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory whose last checkpoint is kept (run.save_model=last)."),
    out: Path = typer.Option(..., "-o", "--out", help="A new folder for the Hugging Face model."),
):
    """Export a run's final model, LoRA adapters merged, as a Hugging Face model directory."""
    from citune.runs.export import export_model

    print(f"{export_model(run_dir, out)}: the final model of {run_dir} (transformers: "
          "AutoModelForCausalLM.from_pretrained)")


def _rescore(run_dir: Path, metric: Optional[str], json_out: Optional[Path]) -> None:
    from citune.io import output_file, write_json
    from citune.report import build_report
    from citune.report.console import print_run_summary
    from citune.runs.rescore import rescore_run

    if metric is not None:
        raise InputError("--metric applies to prediction files; a run's scorers are those of its config",
                         "command line", "--metric")
    if json_out:
        output_file(json_out)
    done = rescore_run(run_dir)
    build_report(run_dir)
    print(f"{run_dir}: {done.predictions} predictions in {done.files} eval.json files rescored, "
          f"{done.changed} primary scores changed; metrics.json and the report rebuilt")
    print_run_summary(done.metrics, run_dir, matrix=True)
    if json_out:
        write_json(json_out, done.metrics)


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    _raise_on_signals()
    try:
        # --debug is accepted anywhere on the line, not only before the command.
        code = app(args=[a for a in sys.argv[1:] if a != "--debug"], prog_name="citune", standalone_mode=False)
    except Interrupted as e:
        print(f"interrupted by {signal.Signals(e.signum).name}: "
              f"{e.resume or 'finished work is kept; run the same command again to continue'}", file=sys.stderr)
        sys.exit(e.exit_code)
    except InputError as e:
        if debug:
            raise
        print(f"error: {e.line()}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as e:
        if debug:
            raise
        print(f"error: {e} (finished stages are kept; fix the settings and run again with --resume)",
              file=sys.stderr)
        sys.exit(1)
    except _click_exceptions().ClickException as e:  # a usage error: click's own lines, exit 2
        e.show()
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
        if debug:
            raise
        print(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)  # typer returns the code of an Exit (130 for a bare Ctrl-C)


def _raise_on_signals() -> None:
    """SIGINT and SIGTERM (a scheduler's stop) raise Interrupted; a second one acts as by default."""
    def stop(signum, frame):
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_DFL if s == signal.SIGTERM else signal.default_int_handler)
        raise Interrupted(signum)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, stop)


def _click_exceptions():
    try:
        from typer._click import exceptions  # typer >= 0.22 vendors click
    except ImportError:
        from click import exceptions
    return exceptions


if __name__ == "__main__":
    main()
