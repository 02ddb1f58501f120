"""report.md / report.html / plots/*.png of one run directory."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from citune.report import plots
from citune.report.doc import Doc, fmt, headline_rows, fmt_seconds, save
from citune.runs.rundata import RunData, final_stage, load_run

PLOTS = ("score_matrix.png", "relative_gain.png", "final_scores.png", "replay_composition.png",
         "inscl_distances.png", "p_score.png")

DEFINITIONS = [
    "R[t][j]: the primary score x100 of task j after stage t (t = 0 is the base model): ROUGE-L F1 unless "
    "the task names another scorer (see the final scores table).",
    "AP_t = mean over j <= t of R[t][j]; final AP = AP_K.",
    "BWT = 1/(K-1) sum_{j<K} (R[K][j] - R[j][j]); FWT = 1/(K-1) sum_{j=2..K} (R[j-1][j] - R[0][j]).",
    "Forgetting = mean over j<K of (max_{j<=t<K} R[t][j] - R[K][j]).",
    "RG_t = 100/(t-1) sum_{j<t} R[t][j] / UB_j (t >= 2); UB_j = R[j][j] unless eval.ub = expert; "
    "tasks with UB_j = 0 are left out of the mean; RG std is the population std over t = 2..K.",
    "P-score_t = mean held-out score after stage t; V-score = % of checkable outputs (seen and held-out) "
    "that satisfy the instruction's verifiable constraints.",
    "n/a: not evaluated, not applicable (e.g. one task), or a stage the run has not finished.",
]


def at(values: Sequence | None, i: int) -> Any:
    """values[i], or None when the list is missing or too short."""
    return values[i] if values is not None and 0 <= i < len(values) else None


def build_report(run_dir: str | Path) -> Path:
    """Write report.md, report.html and plots/*.png into `run_dir`; return the path of report.md."""
    run = load_run(run_dir)
    return save(run_document(run), run.path, PLOTS)


def run_document(run: RunData) -> Doc:
    doc = Doc(f"citune run report: {run.name}")
    doc.para(status_line(run))
    facts_section(doc, run)
    methods_section(doc, run)
    headline_section(doc, run)
    stages_section(doc, run)
    cost_section(doc, run)
    matrix_section(doc, run)
    final_section(doc, run)
    rg_section(doc, run)
    heldout_section(doc, run)
    replay_section(doc, run)
    inscl_section(doc, run)
    doc.heading("Definitions")
    doc.bullets(DEFINITIONS)
    return doc


def status_line(run: RunData) -> str:
    k = len(run.tasks)
    if not run.manifest:
        return "No manifest.json: the run facts are unknown; scores come from the files found."
    if run.complete:
        return f"Complete run: {k} of {k} stages done."
    return f"Partial run: {run.n_done} of {k} stages done; metrics that need a missing stage are n/a."


def facts_section(doc: Doc, run: RunData) -> None:
    m, cfg = run.manifest, run.config
    replay = cfg.get("replay", {}) if isinstance(cfg.get("replay"), dict) else {}
    model = cfg.get("model", {}) if isinstance(cfg.get("model"), dict) else {}
    rows = [
        ("run directory", str(run.path)),
        ("strategy", run.strategy),
        ("replay per previous task", fmt(replay.get("per_task"))),
        ("model", fmt(run.model)),
        ("fine-tuning", fmt(model.get("finetune"))),
        ("seed", str(run.seed)),
        ("config.yaml sha256", fmt(run.config_sha256)),
        ("config hash (manifest)", fmt(m.get("config_hash"))),
        ("stages done", f"{run.n_done} / {len(run.tasks)}"),
        ("started", fmt(m.get("started"))),
        ("finished", fmt(m.get("finished"))),
        ("wall time (sum of stages)", fmt_seconds(run.wall_seconds)),
        ("training tokens", fmt(run.train_tokens)),
    ]
    doc.heading("Run")
    doc.table(["fact", "value"], rows, numeric_from=2)
    versions = m.get("versions") or {}
    if versions:
        doc.heading("Versions", 3)
        doc.table(["package", "version"], sorted(versions.items()), numeric_from=2)


METHOD_FACTS = {  # manifest stage keys a method writes -> their column title
    "projections": "A-GEM projected updates", "ewc_fisher_sum": "EWC Fisher sum", "ssr_generated": "SSR generated",
    "ssr_candidates": "SSR candidates kept", "ssr_synthetic": "SSR replayed synthetic", "ssr_demo_fill": "SSR filled "
    "with demos", "method_seconds": "method set-up time (s)",
}


def methods_section(doc: Doc, run: RunData) -> None:
    """What the run combined (replay strategy, training methods), where each comes from, what each did."""
    methods = run.manifest.get("methods") or []
    if not methods:
        return
    doc.heading("Methods")
    doc.table(["method", "role", "from"], [[m.get("name"), m.get("role"), m.get("paper") or "n/a"] for m in methods])
    keys = [k for k in METHOD_FACTS if any(s.get(k) for s in run.stages)]
    if keys:
        doc.table(["stage", "task", *(METHOD_FACTS[k] for k in keys)],
                  [[s.get("index"), s.get("task"), *(fmt(s.get(k)) for k in keys)] for s in run.stages], numeric_from=2)


def headline_section(doc: Doc, run: RunData) -> None:
    doc.heading("Headline metrics")
    doc.table(["metric", "value", "meaning"], headline_rows(run.metrics), numeric_from=1, numeric_to=2)


def _stage_entry(run: RunData, t: int) -> dict:
    return next((s for s in run.all_stages if s.get("index") == t), {})


def _replayed(run: RunData, t: int) -> Any:
    if t in run.replay:
        return sum(run.replay[t].values())
    return _stage_entry(run, t).get("replay_size")


def stages_section(doc: Doc, run: RunData) -> None:
    m = run.metrics
    rows = []
    for t, task in enumerate(run.tasks, start=1):
        e = _stage_entry(run, t)
        rows.append([t, task, e.get("status", "missing"), fmt_seconds(e.get("seconds")), fmt(e.get("train_tokens")),
                     fmt(_replayed(run, t)), fmt(at(m.get("ap_by_stage"), t - 1)),
                     fmt(at(m.get("rg_by_stage"), t - 2)), fmt(at(m.get("p_score_by_stage"), t - 1)),
                     fmt(at(m.get("v_score_by_stage"), t - 1))])
    doc.heading("Stages")
    doc.table(["stage", "task", "status", "time", "train tokens", "replayed", "AP_t", "RG_t", "P_t", "V_t"],
              rows, numeric_from=3)


def _share(part: Any, whole: Any) -> str:
    return f"{100 * part / whole:.1f} %" if part is not None and whole else fmt(None)


def _whole(x: Any) -> str:
    return fmt(round(x)) if x is not None else fmt(None)


def cost_section(doc: Doc, run: RunData) -> None:
    """Per stage: wall time split into training, replay selection and the rest (evaluation, writes),
    training tokens/s and peak memory, from the manifest (older runs lack some of it: n/a)."""
    entries = [e for e in run.all_stages if e.get("seconds") is not None]
    if not entries:
        return
    gpu = any(e.get("peak_gpu_mb") is not None for e in entries)
    rows, totals = [], [0.0, 0.0, 0.0]  # time, training, selection (None once a stage lacks one)
    for e in entries:
        default = 0.0 if e.get("index") == 0 else None  # the base stage neither trains nor selects
        parts = [e["seconds"], e.get("train_seconds", default), e.get("selection_seconds", default)]
        totals = [a + b if a is not None and b is not None else None for a, b in zip(totals, parts)]
        rows.append([e.get("index"), e.get("task"), *_cost_cells(parts), _whole(e.get("tokens_per_second")),
                     _whole(e.get("peak_rss_mb")), *([_whole(e.get("peak_gpu_mb"))] if gpu else [])])
    rows.append(["all", "", *_cost_cells(totals), "", "", *([""] if gpu else [])])
    doc.heading("Where the time goes")
    doc.para("Stage 0 is the base model's evaluation. Replay selection includes what the strategy does "
             "after training (KPIG scores the task just learned); the rest is evaluation and writing the "
             "stage's files. Peak memory: the stage's resident-set high-water mark, MB.")
    doc.table(["stage", "task", "time", "training", "selection", "selection share", "evaluation and rest",
               "train tok/s", "peak RSS MB", *(["peak GPU MB"] if gpu else [])], rows, numeric_from=2)


def _cost_cells(parts: list[float | None]) -> list[str]:
    total, train, sel = parts
    rest = total - train - sel if None not in parts else None
    return [fmt_seconds(total), fmt_seconds(train), fmt_seconds(sel), _share(sel, total), fmt_seconds(rest)]


def matrix_section(doc: Doc, run: RunData) -> None:
    m, tasks = run.metrics, run.tasks
    matrix = m.get("matrix") or []
    if not tasks or not matrix:
        return
    base = m.get("base_row") or [None] * len(tasks)
    labels = ["0 base"] + [f"{t} {task}" for t, task in enumerate(tasks, start=1)]
    rows = [base] + list(matrix)
    ap = [None] + list(m.get("ap_by_stage") or [])
    doc.heading("Score matrix (primary score x100)")
    doc.para("Row: after stage t. Column: task j in stream order. Entries above the diagonal are tasks not yet "
             "trained on (they feed FWT).")
    doc.table(["after stage", *tasks, "AP_t"],
              [[label, *(fmt(v) for v in row), fmt(at(ap, i))] for i, (label, row) in enumerate(zip(labels, rows))])
    doc.image("score_matrix.png", plots.heatmap(rows, labels, tasks, "Score matrix R[t][j]"),
              "Score matrix: the primary score x100 of each task (column) after each stage (row).")


def _last_row(matrix: Sequence[Sequence]) -> int | None:
    """Index of the last matrix row with any score (the last evaluated stage)."""
    filled = [i for i, row in enumerate(matrix) if any(v is not None for v in row)]
    return filled[-1] if filled else None


def final_section(doc: Doc, run: RunData) -> None:
    m, tasks, held = run.metrics, run.tasks, run.heldout
    matrix = m.get("matrix") or []
    last = _last_row(matrix)
    if last is None:
        return
    scorers = m.get("scorers") or {}
    base = m.get("base_row") or [None] * len(tasks)
    final_eval = run.evals.get(final_stage(run), {}) if final_stage(run) else {}
    rows, learned, finals, bases = [], [], [], []
    for j, task in enumerate(tasks):
        diag = at(at(matrix, j), j) if j <= last else None
        final = matrix[last][j]
        em = final_eval.get("tasks", {}).get(task, {}).get("exact_match")
        change = None if diag is None or final is None else final - diag
        rows.append([task, scorers.get(task, "rougeL"), "seen" if j <= last else "not yet", fmt(base[j]), fmt(diag),
                     fmt(final), fmt(change, signed=True), fmt(em)])
        learned.append(diag), finals.append(final), bases.append(base[j])
    hm, hbase = m.get("heldout_matrix") or [], m.get("heldout_base_row") or [None] * len(held)
    for h, task in enumerate(held):
        final = at(at(hm, last), h)
        em = final_eval.get("heldout", {}).get(task, {}).get("exact_match")
        rows.append([task, scorers.get(task, "rougeL"), "held-out", fmt(hbase[h]), "n/a", fmt(final), "n/a", fmt(em)])
        learned.append(None), finals.append(final), bases.append(hbase[h])
    doc.heading(f"Final scores per task (after stage {last + 1})")
    doc.table(["task", "scorer", "kind", "base", "just learned", "final", "final - learned", "final EM"], rows,
              numeric_from=3)
    series = {"base model": bases, "just learned (R[j][j])": learned, f"after stage {last + 1}": finals}
    doc.image("final_scores.png", plots.grouped_bars(tasks + held, series, "Scores per task", "score x100"),
              "Per task: the base model, right after the task was learned, and after the last stage.")


def rg_section(doc: Doc, run: RunData) -> None:
    rg = run.metrics.get("rg_by_stage")
    if not rg:
        return
    png = plots.lines({run.strategy: (range(2, len(rg) + 2), rg, None, None)}, "Relative Gain by stage",
                      "stage t", "RG_t", reference=100.0)
    doc.heading("Relative Gain by stage")
    doc.image("relative_gain.png", png, "RG_t for t = 2..K; the dashed line is 100 (no loss against UB).")


def heldout_section(doc: Doc, run: RunData) -> None:
    m, held = run.metrics, run.heldout
    if not held:
        return
    hm = m.get("heldout_matrix") or []
    hbase = m.get("heldout_base_row") or [None] * len(held)
    p_base = None if any(v is None for v in hbase) else sum(hbase) / len(hbase)
    p = [p_base] + list(m.get("p_score_by_stage") or [])
    labels = ["0 base"] + [f"{t} {task}" for t, task in enumerate(run.tasks, start=1)]
    rows = [hbase] + list(hm)
    doc.heading("Held-out tasks (generalisation)")
    doc.table(["after stage", *held, "P-score"],
              [[label, *(fmt(v) for v in row), fmt(at(p, i))] for i, (label, row) in enumerate(zip(labels, rows))])
    series = {"P-score": (range(len(p)), p, None, None)}
    if 1 < len(held) <= 6:
        series.update({h: (range(len(rows)), [at(r, i) for r in rows], None, None) for i, h in enumerate(held)})
    doc.image("p_score.png", plots.lines(series, "Held-out scores by stage", "stage t (0 = base)", "score x100"),
              "P-score (mean over held-out tasks) and each held-out task by stage.")


def replay_section(doc: Doc, run: RunData) -> None:
    if not run.replay:
        return
    stages = sorted(run.replay)
    sources = [t for t in run.tasks if any(run.replay[s].get(t) for s in stages)]
    sources += sorted({src for s in stages for src in run.replay[s]} - set(sources))
    names = {t: at(run.tasks, t - 1) or "?" for t in stages}
    rows = [[t, names[t], *(run.replay[t].get(src, 0) for src in sources), sum(run.replay[t].values())]
            for t in stages]
    doc.heading("Replay composition")
    doc.para("Replayed instances per stage, counted from stages/NN-<task>/replay.jsonl by source task.")
    doc.table(["stage", "task", *sources, "total"], rows, numeric_from=2)
    stacks = {src: [run.replay[t].get(src, 0) for t in stages] for src in sources}
    png = plots.stacked_bars([f"{t} {names[t]}" for t in stages], stacks, "Replay composition", "instances")
    doc.image("replay_composition.png", png, "Replayed instances per stage, stacked by source task.")


def inscl_section(doc: Doc, run: RunData) -> None:
    d = run.inscl
    if not isinstance(d, dict) or not d.get("tasks") or not d.get("matrix"):
        return
    tasks, matrix = list(d["tasks"]), d["matrix"]
    if len(matrix) != len(tasks) or any(len(r) != len(tasks) for r in matrix):
        doc.para("inscl_distances.json is malformed (matrix shape does not match tasks); not shown.")
        return
    doc.heading("InsCL task distances")
    doc.table(["task", *tasks], [[t, *(fmt(float(v), 3) for v in row)] for t, row in zip(tasks, matrix)])
    doc.image("inscl_distances.png", plots.heatmap(matrix, tasks, tasks, "InsCL Wasserstein distances",
                                                   cmap="magma", digits=2),
              "Wasserstein distance between the instruction embeddings of each pair of tasks.")
