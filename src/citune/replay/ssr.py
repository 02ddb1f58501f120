"""SSR, self-synthesised rehearsal (Huang et al., ACL 2024), METHODS.md §5.

Only `ssr.demos` real training instances of each earlier task are kept (drawn once per task). Before
stage t, for each earlier task with quota b (b per task, as random replay):
1. the base model (LoRA switched off; under full fine-tuning a copy of the base weights, loaded for the
   selection and freed after) writes new inputs by in-context learning: a prompt shows the demonstrations,
   in a seeded random order, as `Instruction / Input / Output` blocks, then one demonstration's instruction
   and `Input:`, and the continuation up to the next field is sampled at `ssr.temperature` (a task whose
   demonstrations have no input gets new instructions the same way);
2. the latest model (after stage t-1) answers each synthetic instance with the evaluation's prompt and
   greedy decoding;
3. instances with an empty input or output, a duplicate (of another candidate or a demonstration) or a
   prompt and answer longer than `train.max_length` are dropped; rounds repeat until `ssr.pool_factor` * b
   candidates pass or `ssr.max_rounds` is reached;
4. k-means over the candidates' embeddings keeps b of them, the members nearest the centroids first (the
   prototype order of prototype-data). When fewer than b passed, the demonstrations fill the rest, marked
   `synthetic: false` and counted in the manifest.
Every replay record carries `synthetic` and the uids of the demonstrations its prompt showed.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import replace
from typing import Any

import torch
from pydantic import Field

from citune.config import Strict
from citune.models.embeddings import embed_texts
from citune.models.generate import make_jobs, max_new_tokens_for, run_jobs
from citune.replay.base import DATA_PARALLEL, ReplayRecord, StageContext, register
from citune.replay.per_task import EqualQuotaReplay
from citune.replay.prototype_data import prompt_text, prototype_order, seed_of
from citune.replay.random import random_draw
from citune.seeds import seeded_rng
from citune.types import Instance, Task, instance_uid


class SSRConfig(Strict):
    """SSR: replay synthetic instances the models write from a few kept demonstrations."""

    demos: int = Field(4, gt=0, description="real instances kept per earlier task, shown as demonstrations")
    pool_factor: float = Field(3.0, ge=1, description="synthetic candidates per replayed instance, clustered down "
                               "to the quota")
    max_rounds: int = Field(3, gt=0, description="generation rounds per task and stage before the demonstrations "
                            "fill what is missing")
    temperature: float = Field(0.7, gt=0, description="sampling temperature of the synthetic inputs")
    max_new_tokens: int = Field(96, gt=0, description="longest synthetic input or instruction (tokens)")
    batch_size: int = Field(8, gt=0, description="prompts per generation batch")


_FIELD_END = re.compile(r"\n\s*(?:Output|Input|Instruction)\s*:|\n\n")


def icl_prompt(demos: list[Instance], instruction: str, field: str) -> str:
    """The demonstrations as blocks, then the new instance's head up to the field the model writes."""
    def block(x: Instance) -> str:
        return f"Instruction: {x.instruction}\nInput: {x.input}\nOutput: {x.output}" if field == "input" \
            else f"Instruction: {x.instruction}\nOutput: {x.output}"

    head = f"Instruction: {instruction}\nInput:" if field == "input" else "Instruction:"
    return "\n\n".join(block(x) for x in demos) + "\n\n" + head


def first_field(text: str) -> str:
    """The generated field: the text up to the next field or blank line, stripped."""
    return _FIELD_END.split(text, maxsplit=1)[0].strip()


@register("ssr", config=SSRConfig)
class SSR(EqualQuotaReplay):
    paper = "SSR: Huang et al., Mitigating Catastrophic Forgetting in Large Language Models with Self-Synthesized " \
            "Rehearsal, ACL 2024"
    needs_model = True
    distributed = DATA_PARALLEL

    def __init__(self, cfg):
        super().__init__(cfg)
        self.scfg = cfg.replay.ssr
        self._facts: dict[str, int] = {}

    def demos(self, ctx: StageContext, task: Task) -> list[Instance]:
        """What SSR keeps of a task: the same few instances at every stage."""
        return random_draw(task, self.scfg.demos, seeded_rng(ctx.seed, "ssr-demos", task.name))

    def shared(self, ctx: StageContext) -> Any:
        if ctx.model is None:
            raise RuntimeError("ssr synthesises with the trained model; StageContext.model is None")
        self._facts = {"ssr_generated": 0, "ssr_candidates": 0, "ssr_synthetic": 0, "ssr_demo_fill": 0}
        return None

    def pick(self, ctx: StageContext, task: Task, quota: int, shared: Any) -> list[ReplayRecord]:
        demos = self.demos(ctx, task)
        field = "input" if any(x.input for x in demos) else "instruction"
        rng = ctx.rng("ssr", task.name)
        generator = torch.Generator().manual_seed(seed_of(ctx, "ssr-sample", task.name))
        want = max(quota, int(round(self.scfg.pool_factor * quota)))
        seen = {(x.instruction, x.input) for x in demos}
        pool: list[tuple[Instance, list[str]]] = []
        for _ in range(self.scfg.max_rounds):
            if len(pool) >= want:
                break
            pool += self._round(ctx, task, demos, field, want - len(pool), seen, rng, generator)
        self._facts["ssr_candidates"] += len(pool)
        order = self._diverse_order(ctx, task, [x for x, _ in pool], quota) if pool else []
        records = [ReplayRecord(pool[i][0], {"quota": quota, "synthetic": True, "demos": pool[i][1],
                                             "prototype_rank": r}) for r, i in enumerate(order[:quota])]
        self._facts["ssr_synthetic"] += len(records)
        fill = [demos[k % len(demos)] for k in range(quota - len(records))]
        self._facts["ssr_demo_fill"] += len(fill)
        return records + [ReplayRecord(x, {"quota": quota, "synthetic": False, "demos": [x.uid]}) for x in fill]

    def _round(self, ctx, task, demos, field, n, seen, rng, generator) -> list[tuple[Instance, list[str]]]:
        """n synthetic instances written by the base model and answered by the latest one, filtered."""
        shown = [[demos[int(i)] for i in rng.permutation(len(demos))] for _ in range(n)]
        heads = [order[int(rng.integers(len(order)))].instruction for order in shown]
        texts = self._complete_base(ctx, [icl_prompt(o, h, field) for o, h in zip(shown, heads)], generator)
        self._facts["ssr_generated"] += len(texts)
        made = []
        for order, head, text in zip(shown, heads, texts):
            new = first_field(text)
            instruction, input = (head, new) if field == "input" else (new, "")
            if new and (instruction, input) not in seen:
                seen.add((instruction, input))
                made.append((instruction, input, [x.uid for x in order]))
        answers = self._answer(ctx, task, demos, [(ins, inp) for ins, inp, _ in made])
        out = []
        for (instruction, input, uids), answer in zip(made, answers):
            ids, _ = ctx.model.encoder.example(instruction, input, answer, 10**9)
            if answer and len(ids) <= ctx.cfg.train.max_length:
                source = f"ssr:{task.name}"
                uid = instance_uid(instruction, input, (answer,), source)
                out.append((Instance(instruction, input, (answer,), task.name, source, uid), uids))
        return out

    def _complete_base(self, ctx: StageContext, prompts: list[str], generator: torch.Generator) -> list[str]:
        bundle = ctx.model
        ids = [bundle.tokenizer(p)["input_ids"] for p in prompts]
        jobs = make_jobs(None, ids, self.scfg.max_new_tokens, self.scfg.batch_size)
        with base_model(bundle, ctx.cfg, ctx.cache_dir) as base:
            done = run_jobs(base, jobs, temperature=self.scfg.temperature, generator=generator)
        texts = [""] * len(prompts)
        for job, completions in zip(jobs, done):
            for i, c in zip(job.index, completions):
                texts[i] = c.text
        return texts

    def _answer(self, ctx: StageContext, task: Task, demos: list[Instance], items: list[tuple[str, str]]) -> list[str]:
        """The latest model's greedy answers, bounded as the evaluation bounds the task's answers."""
        if not items:
            return []
        bundle, ev = ctx.model, ctx.cfg.eval
        bound = max_new_tokens_for(bundle.tokenizer, [x.output for x in demos], ev.max_new_tokens)
        limit = ev.max_prompt_length or bundle.context_window
        prompts = [bundle.encoder.prompt_ids(ins, inp, limit) for ins, inp in items]
        jobs = make_jobs(None, prompts, bound, self.scfg.batch_size, [ins for ins, _ in items])
        out = [""] * len(items)
        for job, completions in zip(jobs, run_jobs(bundle, jobs)):
            for i, c in zip(job.index, completions):
                out[i] = c.text
        return out

    def _diverse_order(self, ctx: StageContext, task: Task, candidates: list[Instance], quota: int) -> list[int]:
        ins = self.cfg.replay.inscl
        points = embed_texts([prompt_text(x) for x in candidates], ctx.cache_dir, ins.encoder, self.cfg.model,
                             ctx.model)
        return prototype_order(points, quota, seed_of(ctx, self.name, task.name))

    def stage_facts(self) -> dict:
        return dict(self._facts)

    def plan(self, ctx: StageContext) -> dict[str, Any]:
        return {"budget": ctx.budget, "quotas": None, "selected": None,
                "note": "ssr writes its replay with the models during the run"}


@contextlib.contextmanager
def base_model(bundle, cfg, cache_dir):
    """The pre-trained model beside the trained one: LoRA switched off, or (full fine-tuning) the base
    weights loaded for the duration."""
    if hasattr(bundle.model, "disable_adapter"):
        with bundle.model.disable_adapter():
            yield bundle
        return
    from citune.models.loading import load_base

    model, _, _ = load_base(cfg.model, cache_dir)
    model.to(bundle.device).eval()
    try:
        yield replace(bundle, model=model)
    finally:
        del model
