"""Reports from hand-written, schema-correct run directories (ARCHITECTURE.md §2); no training."""
import io
import json
import re

import pytest
from rich.console import Console

from citune.compare import comparison_table, print_comparison, run_compare, write_comparison
from citune.config import load_config
from citune.evaluation.metrics import compute_metrics
from citune.io import read_json, write_json, write_jsonl, write_yaml
from citune.report import build_comparison_report, build_report
from citune.report.console import print_run_summary

TASKS = ["sentiment", "cola", "slicing"]
HELD = ["qa"]
BASE = [10.0, 20.0, 30.0]
MATRIX = [[50.0, 25.0, 35.0], [55.0, 60.0, 45.0], [35.0, 50.0, 80.0]]  # final AP = 55
HELD_BASE = [20.0]
HELD_MATRIX = [[22.0], [24.0], [18.0]]
V = [70.0, 75.0, 80.0]
ALL_PLOTS = {"score_matrix.png", "relative_gain.png", "final_scores.png", "replay_composition.png",
             "inscl_distances.png", "p_score.png"}


def summary(score):
    return {"rougeL": score, "exact_match": score / 2, "n": 4, "v_score": 75.0, "v_checked": 4}


def make_run(root, strategy="random", seed=1, shift=0.0, done=3, with_metrics=True):
    """A run directory as the runner writes it; scores shifted by `shift`; stages after `done` missing."""
    run = root / f"{strategy}-seed{seed}"
    cfg = load_config(None, [f"replay.strategy={strategy}", f"seed={seed}"])
    write_yaml(run / "config.yaml", cfg.to_dict())
    base = [b + shift for b in BASE]
    matrix = [[v + shift for v in row] for row in MATRIX]
    stages = [{"index": 0, "task": "base", "status": "done", "seconds": 5.0}]
    for t, task in enumerate(TASKS, start=1):
        entry = {"index": t, "task": task, "status": "done" if t <= done else "pending"}
        if t <= done:
            entry.update(seconds=60.0, train_tokens=1000 * t, data_hash="abc", replay_hash="def", seed=seed * 1000 + t)
        stages.append(entry)
    write_json(run / "manifest.json", {
        "config_hash": "0123456789abcdef", "model": "tiny", "strategy": strategy, "seed": seed,
        "versions": {"python": "3.11.2", "torch": "2.13.0"}, "started": "2025-01-01T10:00:00",
        "finished": "2025-01-01T10:03:05" if done == 3 else None, "stages": stages, "strategy_state": {}})
    rows = {0: (base, HELD_BASE)} | {t: (matrix[t - 1], HELD_MATRIX[t - 1]) for t in range(1, done + 1)}
    for t, (row, held) in rows.items():
        name = "base" if t == 0 else TASKS[t - 1]
        stage_dir = run / "stages" / f"{t:02d}-{name}"
        write_json(stage_dir / "eval.json", {
            "stage": t, "task": name, "tasks": {k: summary(v) for k, v in zip(TASKS, row)},
            "heldout": {k: summary(v) for k, v in zip(HELD, held)},
            "predictions": {"qa": [{"uid": "qa-0", "prediction": "x", "references": ["x"], "rougeL": 100.0,
                                    "exact_match": 100.0, "v_ok": True}]},
            "v_score": V[t - 1] if t else 60.0, "p_score": held[0]})
        if t >= 1:
            replay = [{"task": TASKS[j], "instruction": "i", "input": "x", "output": "y", "strategy": strategy,
                       "quota": 2} for j in range(t - 1) for _ in range(2 + j)]
            write_jsonl(stage_dir / "replay.jsonl", replay)
            write_jsonl(stage_dir / "train_log.jsonl", [{"step": 1, "loss": 2.0}])
    if with_metrics:
        write_json(run / "metrics.json", compute_metrics(
            TASKS, matrix[:done], base, HELD, HELD_MATRIX[:done], HELD_BASE, V[:done] + [None] * (3 - done)))
    write_json(run / "inscl_distances.json", {"tasks": TASKS, "matrix": [[0, 0.5, 0.7], [0.5, 0, 0.4],
                                                                          [0.7, 0.4, 0]]})
    return run


def table_lines(md: str, header_start: str) -> list[str]:
    lines = md.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    out = []
    while i < len(lines) and lines[i].startswith("|"):
        out.append(lines[i])
        i += 1
    return out


def assert_self_contained(html: str, n_images: int):
    assert html.count("data:image/png;base64,") == n_images
    assert "http:" not in html and "https:" not in html and "url(" not in html
    for src in re.findall(r'src="([^"]*)"', html):
        assert src.startswith("data:image/png;base64,")
    for href in re.findall(r'href="([^"]*)"', html):
        assert ":" not in href and not href.startswith(("/", "//")), href  # relative links only
    assert "<script" not in html and "<link" not in html


def test_run_report(tmp_path):
    run = make_run(tmp_path)
    md_path = build_report(run)
    assert md_path == run / "report.md"
    md = md_path.read_text()
    assert "Complete run: 3 of 3 stages done." in md
    headline = table_lines(md, "| metric")
    assert len({len(line) for line in headline}) == 1, "table columns are padded for the terminal"
    assert any("final AP" in line and "55.00" in line for line in headline)
    assert any("BWT" in line and "-12.50" in line for line in headline)
    assert any("P-score change" in line and "-2.00" in line for line in headline)
    for needle in ("| after stage", "0 base", "3 slicing", "Replay composition", "InsCL task distances",
                   "Held-out tasks", "config.yaml sha256", "torch", "tiny"):
        assert needle in md, needle
    # stage 3 replays 2 from sentiment and 3 from cola
    assert re.search(r"\| 3\s+\| slicing\s+\|\s+2 \|\s+3 \|\s+5 \|", md)
    plots = {p.name for p in (run / "plots").glob("*.png")}
    assert plots == ALL_PLOTS
    for name in plots:
        assert (run / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plots/{name}" in md
    assert_self_contained((run / "report.html").read_text(), len(ALL_PLOTS))
    assert not list(run.glob(".*.tmp")) and not list((run / "plots").glob(".*.tmp"))


def test_where_the_time_goes(tmp_path):
    run = make_run(tmp_path)
    manifest = read_json(run / "manifest.json")
    for e in manifest["stages"][1:]:  # 60 s stages: 45 s training, 3 s selection (none at stage 1)
        e.update(train_seconds=45.0, selection_seconds=3.0 * (e["index"] > 1), tokens_per_second=1234.5,
                 peak_rss_mb=2048.4)
    write_json(run / "manifest.json", manifest)

    def cost_cells():
        table = table_lines(build_report(run).read_text(), "| stage | task      |    time | training")
        return [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]

    cells = cost_cells()
    assert cells[0] == ["0", "base", "5.0 s", "0.0 s", "0.0 s", "0.0 %", "5.0 s", "n/a", "n/a"]
    assert cells[1] == ["1", "sentiment", "1.0 min", "45.0 s", "0.0 s", "0.0 %", "15.0 s", "1,234", "2,048"]
    assert cells[2] == ["2", "cola", "1.0 min", "45.0 s", "3.0 s", "5.0 %", "12.0 s", "1,234", "2,048"]
    # 185 s in all, 135 s training, 6 s selection (3.2 %), 44 s the rest
    assert cells[4] == ["all", "", "3.1 min", "2.2 min", "6.0 s", "3.2 %", "44.0 s", "", ""]
    del manifest["stages"][3]["train_seconds"]  # a run written before these were recorded
    write_json(run / "manifest.json", manifest)
    cells = cost_cells()
    assert cells[3][3:7] == ["n/a", "3.0 s", "5.0 %", "n/a"] and cells[4][3] == "n/a"


def test_rebuild_drops_stale_plots(tmp_path):
    run = make_run(tmp_path)
    build_report(run)
    (run / "inscl_distances.json").unlink()
    build_report(run)
    assert not (run / "plots" / "inscl_distances.png").exists()
    assert "InsCL task distances" not in (run / "report.md").read_text()


def test_partial_run_without_metrics(tmp_path):
    run = make_run(tmp_path, done=2, with_metrics=False)
    md = build_report(run).read_text()
    assert "Partial run: 2 of 3 stages done" in md
    assert re.search(r"\| final AP\s+\|\s+n/a \|", md)
    assert "(after stage 2)" in md  # the final-scores table uses the last evaluated stage
    assert (run / "plots" / "score_matrix.png").is_file()
    assert_self_contained((run / "report.html").read_text(), len(list((run / "plots").glob("*.png"))))


def test_partial_run_with_metrics_and_missing_stage_dir(tmp_path):
    run = make_run(tmp_path, done=2)
    md = build_report(run).read_text()
    assert "Partial run" in md and "pending" in md


def test_nearly_empty_run_dir(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 3\n")
    md = build_report(run).read_text()
    assert "No manifest.json" in md
    assert (run / "report.html").is_file()


def test_comparison_report(tmp_path):
    runs = [make_run(tmp_path, "none", 1, shift=-10.0), make_run(tmp_path, "none", 2, shift=-12.0),
            make_run(tmp_path, "random", 1, shift=0.0), make_run(tmp_path, "random", 2, shift=2.0)]
    for r in runs[:2]:
        build_report(r)
    rows = comparison_table(runs)
    assert [r["strategy"] for r in rows] == ["none", "random"]
    random = rows[1]
    assert random["seeds"] == [1, 2] and random["complete"] == 2
    # AP = 55 + shift: seeds give 55 and 57 -> mean 56, sample std sqrt((1 + 1) / 1) = 1.414
    assert random["ap"]["mean"] == pytest.approx(56.0) and random["ap"]["std"] == pytest.approx(2 ** 0.5)
    assert random["train_tokens"] == 6000 and random["wall_seconds"] == pytest.approx(185.0)
    md = build_comparison_report(tmp_path, runs).read_text()
    # one column per strategy: none (AP 45, 43 -> 44 ± 1.41), random (55, 57 -> 56 ± 1.41)
    assert re.search(r"\| runs\s+\|\s+2 \(seed 1,2\) \|\s+2 \(seed 1,2\) \|", md)
    assert re.search(r"\| final AP\s+\|\s+44\.00 ± 1\.41 \|\s+56\.00 ± 1\.41 \|", md)
    assert "[none-seed1](none-seed1/report.md)" in md  # runs with a report are linked
    plots = {p.name for p in (tmp_path / "plots").glob("*.png")}
    assert plots == {"relative_gain.png", "ap_by_stage.png", "final_scores.png", "p_score.png"}
    html = (tmp_path / "report.html").read_text()
    assert_self_contained(html, 4)
    assert 'href="none-seed1/report.html"' in html


def test_comparison_with_partial_run(tmp_path):
    runs = [make_run(tmp_path, "random", 1), make_run(tmp_path, "random", 2, done=1, with_metrics=False)]
    md = build_comparison_report(tmp_path, runs).read_text()
    assert "2 (seed 1,2), 1 partial" in md and "55.00 (1/2)" in md


def test_write_comparison_and_print(tmp_path):
    runs = [make_run(tmp_path, "none", 1, shift=-10.0), make_run(tmp_path, "random", 1)]
    path = write_comparison(tmp_path, runs)
    data = read_json(path)
    assert [r["strategy"] for r in data["strategies"]] == ["none", "random"]
    assert data["runs"][1]["ap"] == pytest.approx(55.0) and data["strategies"][1]["ap"]["std"] is None
    md = (tmp_path / "comparison.md").read_text()
    assert re.search(r"\| final AP\s+\|\s+45\.00 \|\s+55\.00 \|", md)
    assert "[random-seed1]" not in md and "| random-seed1" in md  # no report yet: no link
    buf = io.StringIO()
    print_comparison(tmp_path, Console(file=buf, width=80))
    out = buf.getvalue()
    assert "random" in out and "55.00" in out and "-12.50" in out
    buf = io.StringIO()
    print_run_summary(read_json(runs[1] / "metrics.json"), runs[1], Console(file=buf, width=120))
    assert "final AP" in buf.getvalue() and "-12.50" in buf.getvalue()


def test_run_compare_skips_finished_runs(tmp_path, monkeypatch):
    import sys
    import types

    def no_training(*a, **k):
        raise AssertionError("a finished run must be skipped")

    monkeypatch.setitem(sys.modules, "citune.runs.runner", types.SimpleNamespace(
        run_stream=no_training, check_inputs=lambda cfg: None))
    for s in ("none", "random"):
        for seed in (1, 2):
            make_run(tmp_path, s, seed)
    parent = run_compare(None, ["none", "random"], [1, 2], tmp_path, [], quiet=True)
    assert parent == tmp_path
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert [r["run"] for r in data["runs"]] == ["none-seed1", "none-seed2", "random-seed1", "random-seed2"]
    assert (tmp_path / "report.html").is_file() and (tmp_path / "comparison.md").is_file()


def test_a_metric_added_since_a_run_is_computed_from_its_evals(tmp_path):
    """metrics.json written before a metric existed (RG with UB = R[j][j] beside the experts'): the
    stored values stay, the missing one comes from the run's eval.json files (it was read as absent)."""
    from citune.runs.rundata import load_run

    run = make_run(tmp_path)
    manifest = read_json(run / "manifest.json")
    write_json(run / "manifest.json", {**manifest, "expert_ub": [90.0, 90.0, 90.0]})
    stored = read_json(run / "metrics.json")
    del stored["relative_gain_learned"]
    stored["relative_gain"] = 12.5  # as the run computed it, kept
    write_json(run / "metrics.json", stored)
    metrics = load_run(run).metrics
    assert metrics["relative_gain"] == 12.5
    default = compute_metrics(TASKS, MATRIX, BASE)  # UB = R[j][j]
    assert metrics["relative_gain_learned"] == pytest.approx(default["relative_gain"])


def test_a_difference_from_the_baseline_is_over_the_seeds_both_have():
    """B has seed 1 only, the baseline A seeds 1 and 2: Δ is B(1) − A(1), not B(1) − mean(A(1), A(2))."""
    from citune.evaluation.metrics import METRIC
    from citune.report.comparison import _vs_baseline

    def row(seeds, values):
        return {"seeds": seeds, **{key: {"mean": sum(values) / len(values), "values": values} for key in METRIC}}

    diff = _vs_baseline(row([1], [5.0]), row([1, 2], [3.0, 9.0]), {key: {"diff_ci": None} for key in METRIC})
    assert diff["ap"]["diff"] == 2.0
