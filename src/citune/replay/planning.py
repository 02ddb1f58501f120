"""`citune plan`: per-stage replay plans without training, as JSON-able dicts and as a text table."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from citune.replay.base import ReplayRecord, ReplayStrategy, StageContext
from citune.replay.compose import get_strategy

if TYPE_CHECKING:
    from citune.config import Config
    from citune.types import Stream

FIRST = 3  # instructions shown per previous task


def summarise(ctx: StageContext, strategy: str, records: Sequence[ReplayRecord],
              distances: Sequence[float] | None = None, score_key: str | None = None,
              descending: bool = True) -> dict[str, Any]:
    """A stage plan: budget, and per previous task its distance, quota and the instructions chosen first
    (by `score_key` of the records' info when given, else in selection order)."""
    by_task: dict[str, list[ReplayRecord]] = {}
    for r in records:
        by_task.setdefault(r.instance.task, []).append(r)
    previous = []
    for j, task in enumerate(ctx.previous):
        recs = by_task.get(task.name, [])
        seen: dict[str, ReplayRecord] = {}
        for r in recs:
            seen.setdefault(r.instance.instruction, r)
        first = list(seen.values())
        if score_key:
            first.sort(key=lambda r: r.info.get(score_key, 0.0), reverse=descending)
        entry: dict[str, Any] = {"task": task.name, "stored": len(task.train), "quota": len(recs),
                                 "instructions": len(first)}
        if distances is not None:
            entry["distance"] = round(float(distances[j]), 6)
        entry["first"] = [_shown(r, score_key) for r in first[:FIRST]]
        previous.append(entry)
    return {"strategy": strategy, "budget": ctx.budget, "replayed": len(records), "previous": previous}


def _shown(r: ReplayRecord, score_key: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"instruction": r.instance.instruction}
    if score_key and score_key in r.info:
        out[score_key] = r.info[score_key]
    if "tags" in r.info:
        out["tags"] = r.info["tags"]
    return out


def plan_stream(cfg: "Config", stream: "Stream", cache_dir: Path) -> list[dict[str, Any]]:
    """Every stage's plan (stage numbers 1-based). A strategy that needs the trained model is asked only
    when it defines its own (model-free) `plan`."""
    strategy = get_strategy(cfg.replay.strategy, cfg)
    own_plan = type(strategy).plan is not ReplayStrategy.plan
    plans = []
    for stage, task in enumerate(stream.tasks):
        ctx = StageContext(cfg=cfg, stream=stream, stage=stage, cache_dir=Path(cache_dir))
        head = {"stage": stage + 1, "task": task.name, "train": len(task.train), "test": len(task.test),
                "strategy": strategy.name}
        if strategy.needs_model and not own_plan:
            note = {"note": "the choice depends on the trained model; not planned"} if ctx.previous else {}
            plans.append({**head, "budget": ctx.budget, "previous": [], **note})
            continue
        plan = strategy.plan(ctx)
        quotas = plan.get("quotas")
        if "previous" not in plan:  # the base class's summary: quotas by task name
            plan["previous"] = ([{"task": t.name, "stored": len(t.train), "quota": quotas.get(t.name, 0)}
                                 for t in ctx.previous] if isinstance(quotas, dict) else [])
        plans.append({**head, **plan})
    return plans


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _first_line(item: dict[str, Any]) -> str:
    scores = [f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in item.items()
              if k not in ("instruction", "tags")]
    tags = f"  [{', '.join(item['tags'])}]" if item.get("tags") else ""
    lead = f"({'; '.join(scores)}) " if scores else ""
    return f"      {lead}{_clip(item['instruction'], 70)}{tags}"


def render_plan(plans: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: per stage, each previous task's distance, quota and first instructions."""
    lines = []
    for p in plans:
        replayed = p.get("replayed", p.get("selected"))
        done = f", replayed {replayed}" if replayed is not None else ""
        lines.append(f"Stage {p['stage']}: {p['task']} ({p['train']} train, {p['test']} test) — "
                     f"{p['strategy']}, budget {p['budget']}{done}")
        prev = p.get("previous", [])
        if p.get("note"):
            lines.append(f"  {p['note']}")
        elif not prev:
            lines.append("  no replay")
        if prev:
            lines.append(f"  {'previous task':<28} {'distance':>9} {'quota':>6} {'stored':>7}")
        for e in prev:
            dist = f"{e['distance']:.4f}" if "distance" in e else "-"
            lines.append(f"  {_clip(e['task'], 28):<28} {dist:>9} {e['quota']:>6} {e['stored']:>7}")
            lines += [_first_line(item) for item in e.get("first", [])]
    return "\n".join(lines)
