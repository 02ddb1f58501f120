"""`benchmarks/superni_analysis.py` on the stored powered results: `--against` prints paired differences
from any strategy without writing anything, and bad input exits 2 with one line."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "superni_analysis.py"
POWERED = ROOT / "benchmarks" / "results" / "superni" / "curriculum-8cat-powered"


def analysis(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=600)


def rows(stdout: str, baseline: str) -> dict[str, list[str]]:
    """strategy -> cells of the differences table printed against `baseline`."""
    head = f"| strategy − {baseline} |"
    table = stdout[stdout.index(head):].split("\n\n")[0].splitlines()[2:]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table)}


def test_help_prints_usage():
    done = analysis("--help")
    assert done.returncode == 0 and "--against" in done.stdout, done.stderr[-2000:]


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path):
    done = analysis(tmp_path / "absent")
    assert done.returncode == 2
    assert done.stderr.strip() == f"{tmp_path / 'absent'}: not a results folder"


def test_differences_from_any_strategy_are_the_stored_means_apart_and_write_nothing(tmp_path):
    stored = tmp_path / POWERED.name  # a copy: the benchmark may be storing runs in POWERED meanwhile
    stored.mkdir()
    for path in [*POWERED.glob("*.run.json.gz"), POWERED / "comparison.json"]:
        shutil.copy2(path, stored)
    before = sorted(stored.iterdir())
    done = analysis(stored, "--against", "none", "--against", "inscl")
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(stored.iterdir()) == before
    runs = json.loads((stored / "comparison.json").read_text(encoding="utf-8"))["runs"]
    ap_of = {(r["strategy"], r["seed"]): r["ap"] for r in runs}
    shared = [seed for (s, seed) in ap_of if s == "inscl" and ("none", seed) in ap_of]
    from_none, from_inscl = rows(done.stdout, "none"), rows(done.stdout, "inscl")
    assert set(from_none) == {s for s, _ in ap_of} - {"none"}
    ap = float(from_none["inscl"][0].split()[0])  # final AP is the first column: over the seeds both have
    assert abs(ap - sum(ap_of["inscl", sd] - ap_of["none", sd] for sd in shared) / len(shared)) < 0.006
    # one set of resamples: inscl − none is none − inscl with its sign and interval mirrored
    mirrored = from_inscl["none"][0].rstrip("*")
    lo, hi = from_none["inscl"][0].rstrip("*").split("[")[1].rstrip("]").split(", ")
    assert mirrored == f"{-ap:+.2f} [{-float(hi):+.1f}, {-float(lo):+.1f}]"


def test_an_unknown_strategy_is_one_line_and_exit_2():
    done = analysis(POWERED, "--against", "no-such-strategy")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "no-such-strategy" in done.stderr
