"""The stage loop: plan replay, build stage data, train, evaluate, record — resumable per stage."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from accelerate import Accelerator
from accelerate.utils import DistributedType

from citune.config import Config, config_file
from citune.data import build_stream
from citune.models.checkpoint import load_trainable, save_trainable
from citune.types import Stream, per_reference
from citune.models.sharding import params_sharded
from citune.engine.zero import load_models_whole
from citune.engine.trainer import (configure_threads, cpu_processes, peak_memory_mb, prepare_for_training,
                                   reset_peak_memory, seed_everything, train_stage)
from citune.errors import InputError
from citune.evaluation.evaluate import build_checkers, evaluate_stage
from citune.evaluation.metrics import metrics_from_evals
from citune.io import read_json
from citune.models import load_model
from citune.models.loading import ModelBundle, check_attention, resolve_model_dir
from citune.engine.precision import check_launch, check_precision, fresh_state, mixed_precision
from citune.paths import cache_root
from citune.progress import progress_bars, say
from citune.replay import StageContext, get_strategy
from citune.replay.base import ReplayStrategy
from citune.runs.rundir import RunDir, content_hash


def make_accelerator(cfg: Config, run_dir: Path) -> Accelerator:
    trackers = [t for t in cfg.run.report_to if t != "wandb" or _has_wandb()]
    precision = mixed_precision(cfg.train)
    fresh_state(precision)
    acc = Accelerator(cpu=cpu_processes(), mixed_precision=precision, log_with=trackers or None,
                      project_dir=str(RunDir(run_dir).logs_dir))
    check_distributed(acc)
    check_launch(cfg.train, acc.num_processes, config_file(cfg))
    if trackers:
        acc.init_trackers("citune", config={"strategy": cfg.replay.strategy, "seed": cfg.seed})
    return acc


def check_distributed(accelerator: Accelerator) -> None:
    """Stop at once, in one line, under a setup the stage loop cannot train in."""
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        plugin = accelerator.state.deepspeed_plugin
        if plugin.zero_stage not in (2, 3):
            raise InputError(f"DeepSpeed ZeRO stage {plugin.zero_stage} is not supported: use stage 2 or 3 (the "
                             "deepspeed-zero2 / deepspeed-zero3 profiles) or the multi-gpu profile", "accelerate launch")
        zero = plugin.deepspeed_config.get("zero_optimization", {})
        offload = [k for k in ("offload_optimizer", "offload_param")
                   if str((zero.get(k) or {}).get("device", "none")).lower() != "none"]
        if offload:
            raise InputError(f"DeepSpeed {', '.join(offload)} is not supported (citune resets the optimizer "
                             "state in place at every stage; offloaded state lives outside it): use the "
                             "deepspeed-zero2 / deepspeed-zero3 profiles as shipped", "accelerate launch")


def check_method_setup(strategy: ReplayStrategy, accelerator: Accelerator) -> None:
    """A method that cannot train under this launch (O-LoRA's per-task adapters under several processes,
    EWC's anchors under sharded parameters, ...) stops the run before anything is written."""
    allowed, kind = strategy.distributed, accelerator.distributed_type.value
    if allowed is not None and kind not in allowed:
        raise InputError(f"{strategy.name} does not run under {kind} (it runs under {', '.join(allowed)}): launch "
                         "it with one process or the multi-gpu/multi-cpu (DDP) profile", "accelerate launch")


def _has_wandb() -> bool:
    import importlib.util

    return importlib.util.find_spec("wandb") is not None


def check_inputs(cfg: Config) -> tuple[Stream, object]:
    """Every input of a run checked before anything is written: the data (the stream), the strategy and
    the model's path."""
    stream = build_stream(cfg)
    strategy = get_strategy(cfg.replay.strategy, cfg)
    strategy.check()
    resolve_model_dir(cfg.model, cache_root(cfg.run.cache_dir))
    check_attention(cfg.model, config_file(cfg))
    check_precision(cfg.train, config_file(cfg))
    return stream, strategy


def run_stream(cfg: Config, run_dir: Path, resume: bool = False,
               write_report: Callable[[Path], object] | None = None) -> dict:
    """Run (or resume) the whole stream into `run_dir`; return the metrics. `write_report(run_dir)`
    is called once the run is finished (the report is a floor above runs/, so it is passed in)."""
    run_dir = Path(run_dir)
    stream, strategy = check_inputs(cfg)
    run = RunDir(run_dir)
    accelerator = make_accelerator(cfg, run_dir)
    check_method_setup(strategy, accelerator)
    load_models_whole(accelerator)  # DeepSpeed ZeRO-3 partitions the model when the engine is made
    configure_threads(cfg.train.threads)
    main = accelerator.is_main_process
    manifest = run.init(cfg, stream.names, resume) if main else None
    accelerator.wait_for_everyone()
    manifest = manifest or run.manifest()
    manifest["dropped"] = stream.dropped()  # per task: instances the data layer dropped, counted
    manifest["methods"] = [{"name": p.name, "role": p.role, "paper": p.paper} for p in strategy.parts]
    manifest["compute"] = {"mixed_precision": accelerator.mixed_precision, "dtype": cfg.model.dtype,
                           "attn_implementation": cfg.model.attn_implementation,
                           "gradient_checkpointing": cfg.train.gradient_checkpointing,
                           "device": accelerator.device.type, "processes": accelerator.num_processes,
                           "distributed": accelerator.distributed_type.value}
    if run.finished():
        say(f"[green]{run_dir}: the run is finished; nothing to resume[/green]", cfg.run.quiet)
        return read_json(run.metrics_path)
    cache = cache_root(cfg.run.cache_dir)
    if any(s["status"] != "done" for s in manifest["stages"]):
        _run_stages(cfg, stream, strategy, run, manifest, accelerator, cache)
    accelerator.wait_for_everyone()  # every eval.json is written before any rank reads them
    if cfg.eval.ub == "expert" and "expert_ub" not in manifest:
        from citune.runs.experts import expert_upper_bounds

        manifest["expert_ub"] = expert_upper_bounds(cfg, stream.tasks, cache, accelerator)
    metrics = collect_metrics(run, stream, cfg, manifest.get("expert_ub"))
    if main:
        run.write_metrics(metrics)
        manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        run.save_manifest(manifest)
        if cfg.run.save_model == "none":
            run.drop_checkpoints()
        if write_report is not None:
            write_report(run.path)
    accelerator.end_training()
    return metrics


def _run_stages(cfg, stream, strategy, run, manifest, accelerator, cache) -> None:
    """Train and evaluate every stage not done, from the last done stage's checkpoint."""
    stages = manifest["stages"]
    done = [s["index"] for s in stages if s["status"] == "done" and s["index"] > 0]
    checkpoint = run.checkpoint(max(done)) if done else None
    bundle = load_model(cfg.model, cache, seed=cfg.seed)
    strategy.setup_model(bundle, stream)  # adapters first: the checkpoint holds them
    if checkpoint is not None:
        load_trainable(bundle.model, checkpoint)
        strategy.load_state_tensors(run.read_state(max(done)))
    with progress_bars(cfg.run.quiet or not accelerator.is_main_process) as bars:
        loop = StageLoop(cfg, stream, strategy, run, manifest, accelerator, cache, bundle,
                         prepare_for_training(accelerator, bundle.model, cfg.train, checkpoint),
                         build_checkers(stream), bars)
        overall = bars.add_task("stages", total=len(stages), info=cfg.replay.strategy)
        for entry in stages:
            if entry["status"] != "done":
                loop.run_stage(entry)
            bars.advance(overall)


@dataclass
class Trained:
    """What a stage's training leaves to record besides its manifest entry."""

    replay: list[dict]  # replay.jsonl rows
    log: list[dict]  # train_log.jsonl rows


@dataclass
class StageLoop:
    """One run's stages: plan replay → build the stage's examples → train → evaluate → record."""

    cfg: Config
    stream: Stream
    strategy: ReplayStrategy
    run: RunDir
    manifest: dict
    accelerator: Accelerator
    cache: Path
    bundle: ModelBundle
    train_model: object  # the Accelerate-prepared model
    checkers: dict
    bars: object

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def run_stage(self, entry: dict) -> None:
        started = time.perf_counter()
        reset_peak_memory()
        entry.update(status="running", seed=self.cfg.seed * 1000 + entry["index"])
        if self.main:
            self.run.save_manifest(self.manifest)
        trained = self.train(entry) if entry["index"] > 0 else None
        result = evaluate_stage(self.bundle, self.stream, entry["index"], self.cfg, self.checkers, self.bars)
        entry.update(status="done", seconds=round(time.perf_counter() - started, 3), **peak_memory_mb())
        if self.main:
            self.record(entry, result, trained)

    def context(self, index: int) -> StageContext:
        return StageContext(cfg=self.cfg, stream=self.stream, stage=index - 1, cache_dir=self.cache,
                            model=self.bundle, state=self.manifest["strategy_state"],
                            artifacts=self.run if self.main else None)

    def train(self, entry: dict) -> Trained:
        """Plan the replay, build the stage's examples, train on them, checkpoint, let the strategy learn."""
        ctx, index = self.context(entry["index"]), entry["index"]
        seed_everything(entry["seed"])
        replay, select_seconds = timed(self.strategy.select, ctx)
        examples = per_reference(self.strategy.training_data(ctx, replay), self.cfg.train.references)
        hooks, hook_seconds = timed(self.strategy.hooks, ctx, examples)  # LwF's teacher, A-GEM's memory, adapters
        stats = train_stage(self.accelerator, self.bundle, examples, self.cfg.train, entry["seed"], hooks.objective,
                            self.bars, label=f"train {entry['task']}", model=self.train_model,
                            penalties=hooks.penalties, projection=hooks.projection)
        self.accelerator.log({"stage/final_loss": stats.final_loss, "stage/tokens_per_s": stats.tokens_per_second},
                             step=index)
        save_trainable(self.bundle.model, self.run.checkpoint(index), write=self.main)  # every rank: FSDP2 gathers
        _, learn_seconds = timed(self.strategy.after_stage, ctx)  # KPIG's learned IG, EWC's Fisher
        if self.main:
            self.run.write_state(index, self.strategy.state_tensors())
        rows = [r.to_record(self.strategy.name, self.cfg.seed, ctx.draw_seed(self.strategy.replay_name, r.instance.task))
                for r in replay]
        entry.update(self.strategy.stage_facts())
        if stats.projections is not None:
            entry["projections"] = stats.projections
        entry.update(selection_seconds=round(select_seconds + learn_seconds, 3), method_seconds=round(hook_seconds, 3),
                     train_examples=stats.examples,
                     replay_size=len(replay), train_tokens=stats.train_tokens, train_seconds=round(stats.seconds, 3),
                     tokens_per_second=round(stats.tokens_per_second, 1), padding_share=stats.padding_share,
                     processes=self.accelerator.num_processes,
                     distributed=self.accelerator.distributed_type.value, sharded=params_sharded(self.bundle.model),
                     data_hash=content_hash(ex.instance.uid for ex in examples), replay_hash=content_hash(rows))
        return Trained(rows, stats.log)

    def record(self, entry: dict, result: dict, trained: Trained | None) -> None:
        """The stage's files and its manifest entry (done), then the older checkpoints and the running metrics."""
        self.run.record_stage(self.manifest, entry, result, trained and trained.replay, trained and trained.log)
        self.run.drop_checkpoints(keep=entry["index"])
        self.run.write_metrics(collect_metrics(self.run, self.stream, self.cfg))


def timed(fn, *args):
    """(fn(*args), seconds it took)."""
    t0 = time.perf_counter()
    return fn(*args), time.perf_counter() - t0


def collect_metrics(run: RunDir, stream: Stream, cfg: Config, ub: list[float] | None = None) -> dict:
    """The score matrices from the stored eval.json files, then every metric."""
    names, held = stream.names, [t.name for t in stream.heldout]
    evals = {}
    for i, name in enumerate(["base", *names]):
        path = run.eval_path(i, name)
        if path.is_file():
            evals[i] = read_json(path)
    return metrics_from_evals(names, held, evals, ub)
