"""Evaluate a model after a stage: every task's test split (seen, and unseen when asked) and held-out tasks.

The test instances of all the tasks evaluated at once are pooled into batches (grouped by
instruction, sorted by length, each row bound by its task's token limit; `pool_jobs`). Under several
processes the generation work is shared out: the batches are cut exactly as in a single process, whole batches are dealt to ranks
(`share_jobs`), and the predictions are gathered on every rank before scoring. A batch's
composition does not depend on the number of ranks, so the predictions (and the scores) are
those of a single-process evaluation.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from citune.config import Config
from citune.types import Instance, Stream, Task
from citune.models.sharding import lockstep
from citune.models.generate import Completion, GenRequest, max_new_tokens_for, pool_jobs, run_jobs, share_jobs
from citune.evaluation.metrics import primary_score
from citune.evaluation.scores import score
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


ALWAYS_SCORED = ("rougeL", "exact_match")


def prompt_bound(bundle, cfg: Config, new_tokens: int) -> int:
    """The longest prompt evaluation shows: `eval.max_prompt_length`, or what the model's context
    window leaves beside the task's generation bound."""
    return cfg.eval.max_prompt_length or max(8, bundle.context_window - new_tokens)


class Predictions(NamedTuple):
    completions: dict[str, list[Completion]]  # task name -> one per test instance, in order
    truncated: dict[str, int]  # task name -> prompts cut to the prompt bound


def predict_tasks(bundle, tasks: list[Task], cfg: Config, bars=None, label: str = "eval") -> Predictions:
    """Greedy completions of the test instances of `tasks` (task name -> list in instance order),
    computed across the processes of the run and returned on every one of them; also counts, per
    task, the prompts that had to be cut (`truncated`)."""
    requests, truncated = [], {}
    for task in tasks:
        instances = test_instances(task, cfg)
        if not instances:
            continue
        refs = [r for x in task.train + task.test for r in x.outputs]
        bound = max_new_tokens_for(bundle.tokenizer, refs, cfg.eval.max_new_tokens)
        limit = prompt_bound(bundle, cfg, bound)
        encoded = [bundle.encoder.encode_prompt(x.instruction, x.input, limit) for x in instances]
        truncated[task.name] = sum(cut for _, cut in encoded)
        requests.append(GenRequest(task.name, [ids for ids, _ in encoded], bound, [x.instruction for x in instances]))
    jobs = pool_jobs(requests, cfg.eval.batch_size)
    rank, world = _rank_world()
    mine = share_jobs(jobs, world)[rank] if world > 1 else list(range(len(jobs)))
    bar = bars.add_task(label, total=sum(len(jobs[j].index) for j in mine), info="") if bars else None
    with lockstep(bundle.model, bundle.tokenizer.pad_token_id):  # ranks run different batches
        done = run_jobs(bundle, [jobs[j] for j in mine],
                        on_job=(lambda job: bars.update(bar, advance=len(job.index), info=str(job.keys[-1])))
                        if bars else None)
    found = [(j, t) for j, t in zip(mine, done)]
    if world > 1:
        from accelerate.utils import gather_object

        found = gather_object(found)
    preds = {t.name: [Completion("", False)] * len(test_instances(t, cfg)) for t in tasks}
    for j, completions in found:
        job = jobs[j]
        for key, i, c in zip(job.keys, job.index, completions):
            preds[key][i] = Completion(*c)
    if bars:
        bars.remove_task(bar)
    return Predictions(preds, truncated)


def score_names(primary: str, extra=()) -> list[str]:
    """The scores computed for a task: ROUGE-L and exact match always, its primary scorer, and
    `extra` (`eval.scorers`)."""
    return list(dict.fromkeys([*ALWAYS_SCORED, primary, *extra]))


def score_rows(rows: list[dict], names: list[str]) -> list[dict]:
    """Each row (with `prediction` and `references`) given a score per scorer name (x100, 4 decimals)."""
    for r in rows:
        r.update({n: round(score(n, r["prediction"], r["references"]), 4) for n in names})
    return rows


def score_task(task: Task, cfg: Config, completions: list[Completion], checker: Checker,
               truncated: int = 0) -> tuple[dict, list[dict]]:
    names = score_names(task.scorer, cfg.eval.scorers)
    rows = [{"uid": x.uid, "prediction": c.text, "references": list(x.outputs)}
            for x, c in zip(test_instances(task, cfg), completions)]
    score_rows(rows, names)
    for r, x in zip(rows, test_instances(task, cfg)):
        r["v_ok"] = checker(x, r["prediction"])
    summary = summarize_rows(rows, task.scorer, names)
    summary.update(truncated=truncated, hit_max_new_tokens=sum(c.hit_bound for c in completions))
    return summary, rows


def evaluate_task(bundle, task: Task, cfg: Config, checker: Checker, bars=None) -> tuple[dict, list[dict]]:
    found = predict_tasks(bundle, [task], cfg, bars, label=f"eval {task.name}")
    return score_task(task, cfg, found.completions[task.name], checker, found.truncated.get(task.name, 0))


def summarize_rows(rows: list[dict], scorer: str = "rougeL", names: tuple[str, ...] | list[str] = ALWAYS_SCORED) -> dict:
    """Mean of each score over the rows, the primary one (`scorer`) also as `score`, and V-score counts."""
    n = len(rows)
    means = {name: sum(r[name] for r in rows) / n if n else None for name in names}
    return {"scorer": scorer, "score": means.get(scorer), **means, "n": n, **v_counts(rows)}


def v_counts(rows: list[dict]) -> dict:
    """V-score (share of checked outputs that satisfy their instruction's constraints) and counts."""
    checked = [r["v_ok"] for r in rows if r["v_ok"] is not None]
    return {"v_score": 100.0 * sum(checked) / len(checked) if checked else None,
            "v_checked": len(checked), "v_unchecked": len(rows) - len(checked)}


def evaluate_stage(bundle, stream: Stream, stage: int, cfg: Config, checkers: dict[str, Checker], bars=None) -> dict:
    """`stage` is 1-based (0 = the base model). Seen tasks are 1..stage."""
    seen = stream.tasks[:stage]
    tasks = stream.tasks if (cfg.eval.eval_unseen or stage == 0) else seen
    result = {"stage": stage, "task": stream.tasks[stage - 1].name if stage else "base",
              "tasks": {}, "heldout": {}, "predictions": {}}
    found = predict_tasks(bundle, list(tasks) + list(stream.heldout), cfg, bars, label=f"eval stage {stage}")
    for group, items in (("tasks", tasks), ("heldout", stream.heldout)):
        for task in items:
            summary, rows = score_task(task, cfg, found.completions[task.name], checkers[task.name],
                                       found.truncated.get(task.name, 0))
            result[group][task.name] = summary
            result["predictions"][task.name] = rows
    v_rows = [r for t in seen + stream.heldout for r in result["predictions"][t.name]]
    result.update(v_counts(v_rows))
    held = [primary_score(s) for s in result["heldout"].values()]
    result["p_score"] = sum(held) / len(held) if held else None
    return result
