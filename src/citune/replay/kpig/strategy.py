"""KPIG replay: key-part information gain drives what is replayed (METHODS.md section 4).

This is a RECONSTRUCTION. The KPIG paper ("Don't Half-listen: Capturing Key-part Information in
Continual Instruction Tuning", He et al., ACL 2025, arXiv 2403.10056) has no public code, and its
method section could not be consulted; what is implemented here follows METHODS.md section 4,
which was rebuilt from the paper's abstract and figure captions. Numbers will not match the paper.

Per stage t ≥ 2 (same total budget B_t as random replay):
1. IG_k = mean IG over a probe sample of previous task k (`kpig.probe` instances), with the model
   after stage t−1; IG_k^learned was stored when task k had just been learned (`after_stage`).
2. Task quotas ∝ max(ε, IG_k^learned − IG_k) (`drop`) or ∝ exp(−IG_k / τ) (`softmax`),
   integerised by `replay.quota.allocate` (largest remainder, capped by what task k stores).
3. Inside task k, the instances with the lowest IG from a scored candidate pool, ties broken by the seed.
   The pool is drawn afresh at every stage (seeded by the stage) and holds max(`kpig.pool`,
   `kpig.pool_factor` x quota) instances, all the task stores when that is less: larger than the quota
   whenever the task can give more, so that IG always chooses (METHODS.md §4.4).
The probe of a task is a fixed prefix of one seeded permutation of its training split, the same at
every stage, so IG^learned and IG are measured on the same instances. An instance whose instruction has no key
part has no IG (Ĩ = I); it is ranked after every scored one and left out of IG_k (IG_k = 0 when the
whole probe is like that). `objective` returns the IG hinge objective; `training_data` swaps in
instruction-diversity variants when `kpig.variants` > 0.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from citune.types import Instance, Task, TrainExample
from citune.replay.base import ReplayRecord, ReplayStrategy, StageContext, register
from citune.replay.kpig.config import KPIGConfig
from citune.replay.kpig.variants import diversify, make_variants, variant_spans
from citune.replay.kpig.infogain import information_gain
from citune.data.instructions import span_texts
from citune.replay.kpig.keyparts import KeyPartExtractor
from citune.seeds import seeded_rng
from citune.spans import Span, mask
from citune.replay.quota import allocate


@register("kpig", config=KPIGConfig)
class KPIGReplay(ReplayStrategy):
    paper = "KPIG: He et al., Don't Half-listen: Capturing Key-part Information in Continual Instruction Tuning, ACL 2025 (reconstructed)"
    needs_model = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.kcfg = cfg.replay.kpig
        self._extractor: KeyPartExtractor | None = None
        self._spans: dict[str, dict[str, list[Span]]] = {}  # task -> instruction -> spans
        self._variant_spans: dict[str, list[Span]] = {}

    # ------------------------------------------------------------ key parts and IG

    def keyparts(self, ctx: StageContext, task: Task) -> dict[str, list[Span]]:
        if self._extractor is None:
            self._extractor = KeyPartExtractor(self.kcfg, ctx.cache_dir)
        if task.name not in self._spans:
            self._spans[task.name] = self._extractor.task_spans(task)
        return self._spans[task.name]

    def scores(self, ctx: StageContext, task: Task, instances: list[Instance]) -> list[float | None]:
        """IG of each instance under ctx.model; None where its instruction has no key part."""
        spans = self.keyparts(ctx, task)
        todo = [i for i, x in enumerate(instances) if spans.get(x.instruction)]
        items = [(x.instruction, mask(x.instruction, spans[x.instruction], self.kcfg.placeholder), x.input, x.output)
                 for x in (instances[i] for i in todo)]
        values = information_gain(ctx.model, items, self.kcfg.ig, self.kcfg.batch_size, self.cfg.train.max_length)
        out: list[float | None] = [None] * len(instances)
        for i, v in zip(todo, values):
            out[i] = v
        return out

    def order(self, ctx: StageContext, task: Task) -> list[int]:
        """A permutation of the task's training indices that does not depend on the stage."""
        rng = seeded_rng(ctx.seed, "kpig-order", task.name)
        return [int(i) for i in rng.permutation(len(task.train))]

    def pool(self, ctx: StageContext, task: Task, quota: int) -> list[int]:
        """This stage's candidates of `task`: a fresh seeded draw, larger than `quota` when the task can give more."""
        size = min(len(task.train), max(self.kcfg.pool, math.ceil(self.kcfg.pool_factor * quota)))
        return [int(i) for i in ctx.rng("kpig-pool", task.name).permutation(len(task.train))[:size]]

    def task_ig(self, ctx: StageContext, task: Task, cache: dict[int, float | None]) -> float:
        """Mean IG over the probe sample (scores are added to `cache`, index -> IG)."""
        probe = self.order(ctx, task)[: self.kcfg.probe]
        self._score_into(ctx, task, probe, cache)
        values = [cache[i] for i in probe if cache[i] is not None]
        return float(np.mean(values)) if values else 0.0

    def _score_into(self, ctx: StageContext, task: Task, indices: list[int], cache: dict[int, float | None]) -> None:
        todo = [i for i in indices if i not in cache]
        for i, v in zip(todo, self.scores(ctx, task, [task.train[i] for i in todo])):
            cache[i] = v

    # ------------------------------------------------------------ quotas and selection

    def weights(self, ig_now: list[float], ig_learned: list[float | None]) -> list[float]:
        eps = self.kcfg.epsilon
        if self.kcfg.quota == "softmax":
            low = min(ig_now)
            return [math.exp(-(v - low) / self.kcfg.tau) for v in ig_now]
        return [max(eps, learned - now) if learned is not None else eps for now, learned in zip(ig_now, ig_learned)]

    def select(self, ctx: StageContext) -> list[ReplayRecord]:
        if not ctx.previous or ctx.budget == 0:
            return []
        if ctx.model is None:
            raise RuntimeError("kpig selects with the trained model; StageContext.model is None")
        learned_all = ctx.state.get("kpig", {}).get("ig_learned", {})
        caches = [dict() for _ in ctx.previous]
        caches[-1].update(self._just_learned(ctx))
        ig_now = [self.task_ig(ctx, t, c) for t, c in zip(ctx.previous, caches)]
        ig_learned = [learned_all.get(t.name) for t in ctx.previous]
        quotas = allocate(ctx.budget, self.weights(ig_now, ig_learned), [len(t.train) for t in ctx.previous])
        records = []
        for task, cache, now, learned, quota in zip(ctx.previous, caches, ig_now, ig_learned, quotas):
            records += self._pick(ctx, task, cache, quota, {"ig_task": now, "ig_learned": learned, "quota": quota})
        return records

    def _pick(self, ctx: StageContext, task: Task, cache: dict[int, float | None], quota: int,
              info: dict[str, Any]) -> list[ReplayRecord]:
        """The `quota` lowest-IG instances of the candidate pool; unscored ones last; ties by the seed."""
        if quota == 0:
            return []
        pool = self.pool(ctx, task, quota)
        self._score_into(ctx, task, pool, cache)
        ties = ctx.rng("kpig", task.name).random(len(pool))
        ranked = sorted(range(len(pool)), key=lambda j: (cache[pool[j]] is None, cache[pool[j]] or 0.0, ties[j]))
        spans = self.keyparts(ctx, task)
        out = []
        for j in ranked[:quota]:
            x = task.train[pool[j]]
            out.append(ReplayRecord(x, {"ig": cache[pool[j]], **info,
                                        "key_parts": span_texts(x.instruction, spans.get(x.instruction, []))}))
        return out

    def plan(self, ctx: StageContext) -> dict[str, Any]:
        return {"budget": ctx.budget, "quotas": None, "selected": None,
                "note": "kpig quotas depend on the trained model's information gain; they are set during the run"}

    def after_stage(self, ctx: StageContext) -> None:
        """Store IG^learned of the task just trained, measured with the freshly trained model."""
        if ctx.model is None or ctx.stage == len(ctx.stream.tasks) - 1:  # no stage after the last to use it
            return
        state = ctx.state.setdefault("kpig", {})
        cache: dict[int, float | None] = {}
        state.setdefault("ig_learned", {})[ctx.current.name] = self.task_ig(ctx, ctx.current, cache)
        # the next stage scores this probe with the same model: keep the scores for it
        state["probe_scores"] = {"stage": ctx.stage, "task": ctx.current.name,
                                 "scores": {str(i): v for i, v in cache.items()}}

    def _just_learned(self, ctx: StageContext) -> dict[int, float | None]:
        """The probe scores of the task trained last, measured by `after_stage` with this very model."""
        stored = ctx.state.get("kpig", {}).get("probe_scores") or {}
        if stored.get("stage") != ctx.stage - 1 or stored.get("task") != ctx.previous[-1].name:
            return {}
        return {int(i): v for i, v in stored["scores"].items()}

    # ------------------------------------------------------------ objective and diversity

    def owns_objective(self) -> bool:
        return self.kcfg.objective and self.kcfg.lam != 0

    def objective(self, ctx: StageContext):
        if not self.owns_objective() or ctx.model is None:
            return None
        from citune.replay.kpig.objective import IGObjective  # lazy: it imports replay helpers

        tasks = [*ctx.previous, ctx.current]
        for t in tasks:
            self.keyparts(ctx, t)

        def lookup(instruction: str) -> list[Span]:
            for t in tasks:
                if instruction in self._spans[t.name]:
                    return self._spans[t.name][instruction]
            return self._variant_spans.get(instruction, [])

        k = self.kcfg
        return IGObjective(ctx.model.encoder, ctx.model.tokenizer.pad_token_id, lookup, k.placeholder, k.lam,
                           k.margin, k.objective_on)

    def training_data(self, ctx: StageContext, replay: list[ReplayRecord]) -> list[TrainExample]:
        """D_t ∪ R_t; with `kpig.variants` > 0 each example shows an instruction drawn from its variants."""
        examples = super().training_data(ctx, replay)
        if self.kcfg.variants == 0:
            return examples
        variants = self.variants(ctx, [*ctx.previous, ctx.current], {ex.instance.instruction for ex in examples})
        return diversify(examples, variants, ctx.rng("kpig-diversity"))

    def variants(self, ctx: StageContext, tasks: list[Task], instructions: set[str]) -> dict[str, list[str]]:
        """Variants of each instruction (of `tasks`) in `instructions`; counts go to ctx.state."""
        out: dict[str, list[str]] = {}
        rejected = 0
        for task in tasks:
            for ins, spans in self.keyparts(ctx, task).items():
                if ins in instructions and ins not in out:
                    out[ins], r = make_variants(ins, spans, self.kcfg.variants, self.kcfg, ctx.cache_dir)
                    rejected += r
                    parts = span_texts(ins, spans)
                    self._variant_spans.update({v: variant_spans(v, parts) for v in out[ins]})
        stats = ctx.state.setdefault("kpig", {}).setdefault("diversity", {})
        stats[str(ctx.stage)] = {"instructions": len(out), "variants": sum(map(len, out.values())),
                                 "rejected": rejected}
        return out
