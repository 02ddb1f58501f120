"""Side-by-side results of several runs: the per-strategy table, comparison.md and the comparison report.

Across seeds: mean and *sample* standard deviation (ddof = 1; None with one seed),
over the runs where the metric exists (the table says `k/n` when some lack it), and a
95 % interval of each metric and of each strategy's paired difference from a baseline
strategy (citune.evaluation.uncertainty, METHODS.md §2.2). Plot bands span the min..max over seeds.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from citune.errors import InputError
from citune.evaluation.metrics import HEADLINE, METRIC
from citune.evaluation.uncertainty import LEVEL, METHOD, bootstrap_intervals, shared_seeds
from citune.io import atomic_write_text, read_json, write_json
from citune.report import plots
from citune.report.doc import Doc, Link, fmt, fmt_seconds, save
from citune.runs.rundata import RunData, instance_scores, load_run
from citune.report.run_report import DEFINITIONS, _last_row, at

PLOTS = ("relative_gain.png", "ap_by_stage.png", "final_scores.png", "p_score.png")

# (key in metrics.json, column title, signed)
RESAMPLES, BOOTSTRAP_SEED = 1000, 0


def summarize(values: Sequence[Any]) -> dict:
    """Mean, sample std (ddof=1) and count over the non-None values."""
    vals = [float(v) for v in values if v is not None]
    n = len(vals)
    mean = sum(vals) / n if n else None
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n, "values": list(values)}


def run_row(run: RunData) -> dict:
    """One run's facts and headline metrics (a row of comparison.json's `runs`)."""
    row = {"run": run.name, "path": str(run.path), "strategy": run.strategy, "seed": run.seed,
           "complete": run.complete, "stages_done": run.n_done, "stages": len(run.tasks),
           "train_tokens": run.train_tokens, "wall_seconds": run.wall_seconds}
    row.update({key: run.metrics.get(key) for key in METRIC})
    return row


def _group(runs: Sequence[RunData]) -> dict[str, list[RunData]]:
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        groups.setdefault(r.strategy, []).append(r)
    return groups


def default_baseline(strategies: Sequence[str]) -> str | None:
    """The reference of the paired differences: `random` replay when compared, else the first strategy."""
    return "random" if "random" in strategies else (strategies[0] if strategies else None)


def _baseline(strategies: Sequence[str], requested: str | None) -> str | None:
    if requested is None:
        return default_baseline(strategies)
    if requested not in strategies:
        raise InputError(f"baseline '{requested}' is not one of the strategies compared ({', '.join(strategies)})")
    return requested


def _strategy_row(strategy: str, runs: list[RunData], intervals: dict) -> dict:
    tokens = summarize([r.train_tokens for r in runs])
    wall = summarize([r.wall_seconds for r in runs])
    row = {"strategy": strategy, "runs": [r.name for r in runs], "seeds": [r.seed for r in runs],
           "complete": sum(r.complete for r in runs),
           "train_tokens": tokens["mean"], "wall_seconds": wall["mean"]}
    row.update({key: summarize([r.metrics.get(key) for r in runs]) | {"ci": intervals[key]["ci"]}
                for key in METRIC})
    return row


def _vs_baseline(row: dict, base: dict, intervals: dict) -> dict:
    """Per metric: the difference of the means over the seeds both strategies have (the pairing of
    `bootstrap_intervals`), its paired interval, whether it excludes 0."""
    shared = shared_seeds(row["seeds"], base["seeds"])

    def mean_over_shared(r: dict, key: str) -> float | None:
        return summarize([r[key]["values"][r["seeds"].index(sd)] for sd in shared])["mean"]

    out = {}
    for key in METRIC:
        a, b, ci = mean_over_shared(row, key), mean_over_shared(base, key), intervals[key]["diff_ci"]
        out[key] = {"diff": None if a is None or b is None else a - b, "ci": ci,
                    "excludes_zero": None if ci is None else bool(ci[0] > 0 or ci[1] < 0)}
    return out


def comparison_table(run_dirs: Sequence[str | Path], baseline: str | None = None,
                     resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[dict]:
    """One row per strategy (in order of first appearance): every metric as {mean, std, n, values, ci}
    over seeds, `vs_baseline` (per metric {diff, ci, excludes_zero}; None for the baseline itself),
    plus mean training tokens and mean wall time per run."""
    return _table([load_run(d) for d in run_dirs], baseline, resamples, seed)


def _table(runs: Sequence[RunData], baseline: str | None = None, resamples: int = RESAMPLES,
           seed: int = BOOTSTRAP_SEED) -> list[dict]:
    groups = _group(runs)
    baseline = _baseline(list(groups), baseline)
    try:
        intervals = bootstrap_intervals({s: {r.seed: instance_scores(r) for r in rs} for s, rs in groups.items()},
                                        list(METRIC), baseline, resamples, seed)
    except ValueError as e:  # runs of one seed that do not share their test instances
        raise InputError(str(e)) from e
    rows = [_strategy_row(s, rs, intervals[s]) for s, rs in groups.items()]
    base = next((r for r in rows if r["strategy"] == baseline), None)
    for row in rows:
        row["vs_baseline"] = None if row is base else _vs_baseline(row, base, intervals[row["strategy"]])
    return rows


def _bounds(ci: list | None, signed: bool) -> str:
    return "[n/a]" if ci is None else f"[{fmt(ci[0], 1, signed)}, {fmt(ci[1], 1, signed)}]"


def cell(stat: dict, signed: bool = False, runs: int | None = None) -> str:
    """`mean [lo, hi]` (the 95 % interval), or `mean ± std` without one; `(k/n)` when only k of the
    n runs have the metric."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    text = fmt(stat["mean"], signed=signed)
    if stat.get("ci") is not None:
        text += " " + _bounds(stat["ci"], signed)
    elif stat.get("std") is not None:
        text += f" ± {stat['std']:.2f}"
    if runs is not None and stat["n"] < runs:
        text += f" ({stat['n']}/{runs})"
    return text


def diff_cell(diff: dict | None) -> str:
    """`+d [lo, hi]`, marked `*` when the interval excludes 0; `ref` for the baseline itself."""
    if diff is None:
        return "ref"
    if diff["diff"] is None:
        return "n/a"
    return f"{fmt(diff['diff'], signed=True)} {_bounds(diff['ci'], True)}{'*' if diff['excludes_zero'] else ''}"


def baseline_of(rows: list[dict]) -> str | None:
    """The strategy the rows' differences are taken from (the one without `vs_baseline`)."""
    if len(rows) < 2 or not all("vs_baseline" in r for r in rows):
        return None
    return next((r["strategy"] for r in rows if r["vs_baseline"] is None), None)


RUN_METRICS = ["ap", "bwt", "fwt", "forgetting", "relative_gain", "p_score", "v_score"]  # per-run table


def _runs_cell(row: dict) -> str:
    n = len(row["runs"])
    seeds = ",".join("?" if s is None else str(s) for s in row["seeds"])
    return f"{n} (seed {seeds})" + ("" if row["complete"] == n else f", {n - row['complete']} partial")


def strategy_columns(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The per-strategy table transposed (one column per strategy, one line per metric), so that it
    stays narrow in a terminal; shared by Markdown, HTML and the rich console table."""
    headers = ["", *(r["strategy"] for r in rows)]
    lines = [["runs", *(_runs_cell(r) for r in rows)]]
    baseline = baseline_of(rows)
    for key, title, signed in ((m.key, m.label, m.signed) for m in HEADLINE
                               if not m.optional or any(r[m.key]["mean"] is not None for r in rows)):
        lines.append([title, *(cell(r[key], signed, len(r["runs"])) for r in rows)])
        if baseline:
            lines.append([f"  Δ vs {baseline}", *(diff_cell(r["vs_baseline"] and r["vs_baseline"][key])
                                                  for r in rows)])
    lines.append(["train tokens / run", *("n/a" if r["train_tokens"] is None else f"{r['train_tokens']:,.0f}"
                                          for r in rows)])
    lines.append(["wall time / run", *(fmt_seconds(r["wall_seconds"]) for r in rows)])
    return headers, lines


def _link(parent: Path, run: RunData) -> Any:
    rel = os.path.relpath(run.path, parent)
    if not (run.path / "report.md").is_file():
        return rel
    return Link(rel, f"{rel}/report.md", f"{rel}/report.html")


def _run_cells(parent: Path, run: RunData) -> list:
    r = run_row(run)
    signed = {m.key: m.signed for m in HEADLINE}
    return [_link(parent, run), "?" if r["seed"] is None else str(r["seed"]), f"{r['stages_done']}/{r['stages']}",
            *(fmt(r[key], signed=signed[key]) for key in RUN_METRICS), fmt(r["train_tokens"]),
            fmt_seconds(r["wall_seconds"])]


def interval_sentence(data: dict) -> str:
    """How the table's intervals were made, in words (from comparison.json's `interval` and `baseline`)."""
    ci, baseline = data.get("interval") or {}, data.get("baseline")
    if not ci:
        return "No intervals."
    seeds = ci.get("seeds") or []
    text = (f"[lo, hi]: {ci['level']:g} % interval, {ci['method']} ({ci['resamples']:,} resamples, seed "
            f"{ci['seed']}; the metrics recomputed from each resampled score matrix)")
    if baseline and len(data.get("strategies") or []) > 1:
        text += (f"; Δ vs {baseline}: each strategy's mean minus {baseline}'s over the seeds both have, with the "
                 "paired interval, * when it excludes 0")
    text += ". "
    if len(seeds) == 1:
        text += "With one seed the intervals cover test-instance noise only, not the variation between seeds. "
    if ci.get("expert_ub"):
        text += ("Final RG divides by single-task expert scores, fixed (not resampled); final RG (UB R[j][j]) "
                 "by each run's own score on a task just after learning it, resampled with the rest. ")
    return text + ("Without an interval ([n/a]; mean ± sample std over seeds, ddof = 1): runs without "
                   "per-instance predictions.")


def _comparison_data(runs: Sequence[RunData], baseline: str | None, resamples: int, seed: int) -> dict:
    baseline = _baseline(list(_group(runs)), baseline)
    return {
        "std": "sample standard deviation over seeds (ddof=1); null with one seed",
        "baseline": baseline,
        "interval": {"method": METHOD, "level": LEVEL, "resamples": resamples, "seed": seed,
                     "seeds": list(dict.fromkeys(r.seed for r in runs)),
                     "expert_ub": any(r.manifest.get("expert_ub") for r in runs)},
        "strategies": _table(runs, baseline, resamples, seed),
        "runs": [run_row(r) for r in runs],
    }


def tables_document(parent: Path, runs: Sequence[RunData], title: str, data: dict | None = None) -> Doc:
    """The tables shared by comparison.md and the comparison report (`data`: comparison.json's content)."""
    data = data or _comparison_data(runs, None, RESAMPLES, BOOTSTRAP_SEED)
    doc = Doc(title)
    doc.para(f"{len(runs)} runs. Metrics: mean over seeds; (k/n): only k of n runs have the metric (partial runs "
             "or no held-out tasks). " + interval_sentence(data))
    doc.heading("By strategy")
    doc.table(*strategy_columns(data["strategies"]), numeric_from=1)
    doc.heading("Runs")
    titles = {m.key: m.label for m in HEADLINE}
    doc.table(["run", "seed", "stages", *(titles[k] for k in RUN_METRICS), "train tokens", "wall time"],
              [_run_cells(parent, r) for r in runs], numeric_from=1)
    tasks = {tuple(r.tasks) for r in runs if r.tasks}
    if len(tasks) > 1:
        doc.para("Warning: the runs do not share one task stream; per-task plots use the first run's tasks.")
    return doc


def write_comparison(parent: str | Path, run_dirs: Sequence[str | Path], baseline: str | None = None,
                     resamples: int | None = None, seed: int | None = None) -> Path:
    """comparison.json (per-strategy table + per-run rows) and comparison.md; return comparison.json.
    The baseline, resample count and seed default to those recorded in an existing comparison.json."""
    return _write_comparison(Path(parent), [load_run(d) for d in run_dirs], baseline, resamples, seed)[0]


def _recorded(parent: Path) -> dict:
    try:
        data = read_json(parent / "comparison.json")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_comparison(parent: Path, runs: Sequence[RunData], baseline: str | None, resamples: int | None,
                      seed: int | None) -> tuple[Path, dict]:
    old = _recorded(parent)
    ci = old.get("interval") or {}
    if baseline is None and old.get("baseline") in {r.strategy for r in runs}:
        baseline = old["baseline"]
    data = _comparison_data(runs, baseline, resamples or ci.get("resamples") or RESAMPLES,
                            seed if seed is not None else ci.get("seed", BOOTSTRAP_SEED))
    path = parent / "comparison.json"
    write_json(path, data)
    atomic_write_text(parent / "comparison.md", tables_document(parent, runs, "citune comparison", data).markdown())
    return path, data


# ---------------------------------------------------------------- plots across seeds

def _band(curves: Sequence[Sequence | None]) -> tuple[list, list, list]:
    """Per position: mean, min and max over the curves' non-None values."""
    length = max((len(c) for c in curves if c), default=0)
    mean, low, high = [], [], []
    for i in range(length):
        vals = [c[i] for c in curves if c and i < len(c) and c[i] is not None]
        mean.append(sum(vals) / len(vals) if vals else None)
        low.append(min(vals) if vals else None)
        high.append(max(vals) if vals else None)
    return mean, low, high


def _p_by_stage(run: RunData) -> list | None:
    """P-score of the base model (stage 0) followed by P-score_t, t = 1..K."""
    m = run.metrics
    by_stage, base = m.get("p_score_by_stage"), m.get("heldout_base_row")
    if not by_stage:
        return None
    p0 = sum(base) / len(base) if base and all(v is not None for v in base) else None
    return [p0, *by_stage]


def _stage_lines(groups: dict[str, list[RunData]], key: str, first: int, curve=None) -> dict:
    series = {}
    for strategy, runs in groups.items():
        mean, low, high = _band([curve(r) if curve else r.metrics.get(key) for r in runs])
        if mean:
            banded = len(runs) > 1
            series[strategy] = (range(first, first + len(mean)), mean, low if banded else None,
                                high if banded else None)
    return series


def _final_scores(run: RunData, names: list[str]) -> list:
    m = run.metrics
    matrix, hm = m.get("matrix") or [], m.get("heldout_matrix") or []
    last = _last_row(matrix)
    if last is None:
        return [None] * len(names)
    scores = dict(zip(run.tasks, matrix[last]))
    scores.update(zip(run.heldout, at(hm, last) or []))
    return [scores.get(n) for n in names]


def plots_section(doc: Doc, runs: Sequence[RunData]) -> None:
    groups = _group(runs)
    doc.heading("Plots")
    bands = "; bands span min..max over seeds" if any(len(v) > 1 for v in groups.values()) else ""
    rg = _stage_lines(groups, "rg_by_stage", 2)
    doc.image("relative_gain.png", plots.lines(rg, "Relative Gain by stage", "stage t", "RG_t", reference=100.0),
              f"Relative Gain RG_t by stage, mean over seeds{bands}.")
    ap = _stage_lines(groups, "ap_by_stage", 1)
    doc.image("ap_by_stage.png", plots.lines(ap, "Average performance by stage", "stage t", "AP_t"),
              f"AP_t (mean over seen tasks) by stage, mean over seeds{bands}.")
    first = next((r for r in runs if r.tasks), None)
    if first is not None:
        names = first.tasks + first.heldout
        means, errors = {}, {}
        for strategy, rs in groups.items():
            mean, low, high = _band([_final_scores(r, names) for r in rs])
            means[strategy] = mean
            errors[strategy] = ([None if m is None else m - lo for m, lo in zip(mean, low)],
                                [None if m is None else hi - m for m, hi in zip(mean, high)])
        doc.image("final_scores.png", plots.grouped_bars(names, means, "Final scores per task", "score x100",
                                                         errors if bands else None),
                  f"Score of each task (held-out last) after the last evaluated stage, mean over seeds"
                  f"{'; error bars span min..max' if bands else ''}.")
    p = _stage_lines(groups, "p_score_by_stage", 0, curve=_p_by_stage)
    doc.image("p_score.png", plots.lines(p, "P-score by stage", "stage t (0 = base)", "P-score"),
              f"Mean held-out score by stage (0: the base model), mean over seeds{bands}.")


def build_comparison_report(parent_dir: str | Path, run_dirs: Sequence[str | Path], baseline: str | None = None,
                            resamples: int | None = None, seed: int | None = None) -> Path:
    """Write comparison.json, comparison.md, report.md, report.html and plots/*.png comparing `run_dirs`
    into `parent_dir`; return the path of report.md. Differences are taken from `baseline` (default: the
    one recorded in comparison.json, else `default_baseline`). Strategies keep the order of an existing
    comparison.json (`citune report` lists the run directories alphabetically); new ones follow."""
    parent = Path(parent_dir)
    order = [r.get("strategy") for r in _recorded(parent).get("strategies") or [] if isinstance(r, dict)]
    runs = sorted((load_run(d) for d in run_dirs),
                  key=lambda r: order.index(r.strategy) if r.strategy in order else len(order))
    _, data = _write_comparison(parent, runs, baseline, resamples, seed)
    doc = tables_document(parent, runs, f"citune comparison: {parent.name or parent.resolve().name}", data)
    plots_section(doc, runs)
    doc.heading("Definitions")
    doc.bullets(DEFINITIONS)
    return save(doc, parent, PLOTS)
