"""Evaluate a model after a stage: every task's test split (seen, and unseen when asked) and held-out tasks."""
from __future__ import annotations

from typing import Callable

from citune.config import Config
from citune.data.types import Instance, Stream, Task
from citune.evaluation.generate import generate, max_new_tokens_for
from citune.evaluation.scores import exact_match, rouge_l
from citune.evaluation.vscore import build_checker

Checker = Callable[[Instance, str], "bool | None"]


def test_instances(task: Task, cfg: Config) -> list[Instance]:
    cap = cfg.eval.max_test_per_task
    return task.test[:cap] if cap else task.test


def build_checkers(stream: Stream) -> dict[str, Checker]:
    return {t.name: build_checker(t) for t in stream.tasks + stream.heldout}


def evaluate_task(bundle, task: Task, cfg: Config, checker: Checker, bars=None) -> tuple[dict, list[dict]]:
    instances = test_instances(task, cfg)
    refs = [r for x in task.train + task.test for r in x.outputs]
    bound = max_new_tokens_for(bundle.tokenizer, refs, cfg.eval.max_new_tokens)
    bar = bars.add_task(f"eval {task.name}", total=len(instances), info=f"≤{bound} new tokens") if bars else None
    preds = generate(bundle, instances, bound, cfg.eval.batch_size, cfg.train.max_length,
                     on_batch=(lambda n: bars.advance(bar, n)) if bars else None)
    if bars:
        bars.remove_task(bar)
    rows = []
    for x, p in zip(instances, preds):
        rows.append({"uid": x.uid, "prediction": p, "references": list(x.outputs),
                     "rougeL": round(rouge_l(p, x.outputs), 4), "exact_match": exact_match(p, x.outputs),
                     "v_ok": checker(x, p)})
    return summarize(rows), rows


def summarize(rows: list[dict]) -> dict:
    n = len(rows)
    checked = [r["v_ok"] for r in rows if r["v_ok"] is not None]
    return {
        "rougeL": sum(r["rougeL"] for r in rows) / n if n else None,
        "exact_match": sum(r["exact_match"] for r in rows) / n if n else None,
        "n": n,
        "v_score": 100.0 * sum(checked) / len(checked) if checked else None,
        "v_checked": len(checked),
        "v_unchecked": n - len(checked),
    }


def evaluate_stage(bundle, stream: Stream, stage: int, cfg: Config, checkers: dict[str, Checker], bars=None) -> dict:
    """`stage` is 1-based (0 = the base model). Seen tasks are 1..stage."""
    seen = stream.tasks[:stage]
    tasks = stream.tasks if (cfg.eval.eval_unseen or stage == 0) else seen
    result = {"stage": stage, "task": stream.tasks[stage - 1].name if stage else "base",
              "tasks": {}, "heldout": {}, "predictions": {}}
    for group, items in (("tasks", tasks), ("heldout", stream.heldout)):
        for task in items:
            summary, rows = evaluate_task(bundle, task, cfg, checkers[task.name], bars)
            result[group][task.name] = summary
            result["predictions"][task.name] = rows
    v_rows = [r for t in seen + stream.heldout for r in result["predictions"][t.name]]
    v = summarize(v_rows) if v_rows else {"v_score": None, "v_checked": 0, "v_unchecked": 0}
    result.update(v_score=v["v_score"], v_checked=v["v_checked"], v_unchecked=v["v_unchecked"])
    held = [s["rougeL"] for s in result["heldout"].values()]
    result["p_score"] = sum(held) / len(held) if held else None
    return result
