"""Evaluate a model after a stage: every task's test split (seen, and unseen when asked) and held-out tasks.

The test instances of all the tasks evaluated at once are pooled into batches (grouped by
instruction, sorted by length, each row bound by its task's token limit; `pool_jobs`). Under several
processes the generation work is shared out: the batches are cut exactly as in a single process, whole batches are dealt to ranks
(`share_jobs`), and the predictions are gathered on every rank before scoring. A batch's
composition does not depend on the number of ranks, so the predictions (and the scores) are
those of a single-process evaluation.
"""
from __future__ import annotations

from typing import Callable

from citune.config import Config
from citune.data.types import Instance, Stream, Task
from citune.engine.sharding import lockstep
from citune.evaluation.generate import GenRequest, max_new_tokens_for, pool_jobs, run_jobs, share_jobs
from citune.evaluation.scores import exact_match, rouge_l
from citune.evaluation.vscore import build_checker

Checker = Callable[[Instance, str], "bool | None"]


def test_instances(task: Task, cfg: Config) -> list[Instance]:
    cap = cfg.eval.max_test_per_task
    return task.test[:cap] if cap else task.test


def build_checkers(stream: Stream) -> dict[str, Checker]:
    return {t.name: build_checker(t) for t in stream.tasks + stream.heldout}


def _rank_world() -> tuple[int, int]:
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes


def predict_tasks(bundle, tasks: list[Task], cfg: Config, bars=None, label: str = "eval") -> dict[str, list[str]]:
    """Greedy predictions for the test instances of `tasks` (task name -> list in instance order),
    computed across the processes of the run and returned on every one of them."""
    requests = []
    for task in tasks:
        instances = test_instances(task, cfg)
        if not instances:
            continue
        refs = [r for x in task.train + task.test for r in x.outputs]
        bound = max_new_tokens_for(bundle.tokenizer, refs, cfg.eval.max_new_tokens)
        prompts = [bundle.encoder.prompt_ids(x.instruction, x.input, cfg.train.max_length) for x in instances]
        requests.append(GenRequest(task.name, prompts, bound, [x.instruction for x in instances]))
    jobs = pool_jobs(requests, cfg.eval.batch_size)
    rank, world = _rank_world()
    mine = share_jobs(jobs, world)[rank] if world > 1 else list(range(len(jobs)))
    bar = bars.add_task(label, total=sum(len(jobs[j].index) for j in mine), info="") if bars else None
    with lockstep(bundle.model, bundle.tokenizer.pad_token_id):  # ranks run different batches
        texts = run_jobs(bundle, [jobs[j] for j in mine],
                         on_job=(lambda job: bars.update(bar, advance=len(job.index), info=str(job.keys[-1])))
                         if bars else None)
    found = [(j, t) for j, t in zip(mine, texts)]
    if world > 1:
        from accelerate.utils import gather_object

        found = gather_object(found)
    preds = {t.name: [""] * len(test_instances(t, cfg)) for t in tasks}
    for j, texts_j in found:
        job = jobs[j]
        for key, i, p in zip(job.keys, job.index, texts_j):
            preds[key][i] = p
    if bars:
        bars.remove_task(bar)
    return preds


def score_task(task: Task, cfg: Config, preds: list[str], checker: Checker) -> tuple[dict, list[dict]]:
    rows = []
    for x, p in zip(test_instances(task, cfg), preds):
        rows.append({"uid": x.uid, "prediction": p, "references": list(x.outputs),
                     "rougeL": round(rouge_l(p, x.outputs), 4), "exact_match": exact_match(p, x.outputs),
                     "v_ok": checker(x, p)})
    return summarize(rows), rows


def evaluate_task(bundle, task: Task, cfg: Config, checker: Checker, bars=None) -> tuple[dict, list[dict]]:
    preds = predict_tasks(bundle, [task], cfg, bars, label=f"eval {task.name}")[task.name]
    return score_task(task, cfg, preds, checker)


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
    preds = predict_tasks(bundle, list(tasks) + list(stream.heldout), cfg, bars, label=f"eval stage {stage}")
    for group, items in (("tasks", tasks), ("heldout", stream.heldout)):
        for task in items:
            summary, rows = score_task(task, cfg, preds[task.name], checkers[task.name])
            result[group][task.name] = summary
            result["predictions"][task.name] = rows
    v_rows = [r for t in seen + stream.heldout for r in result["predictions"][t.name]]
    v = summarize(v_rows) if v_rows else {"v_score": None, "v_checked": 0, "v_unchecked": 0}
    result.update(v_score=v["v_score"], v_checked=v["v_checked"], v_unchecked=v["v_unchecked"])
    held = [s["rougeL"] for s in result["heldout"].values()]
    result["p_score"] = sum(held) / len(held) if held else None
    return result
