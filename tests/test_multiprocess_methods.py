"""EWC and A-GEM under two DDP CPU processes against one process (a module of its own, so that the test
runner can give it to another worker than tests/test_multiprocess.py's runs)."""
import json
import sys

import pytest

from test_multiprocess import OVERRIDES, TINY, _env, _own_cache, _run, _stages

# EWC and A-GEM under two DDP processes: EWC's penalty is added to each rank's weighted loss (the weights
# add up to the world, so DDP's average carries it once), A-GEM's reference gradient is reduced like the
# training gradient, so both ranks project the same updates as one process does.
# lambda = 1 keeps the tiny model's full fine-tuning off the stiff regime where the anchor (lambda 5000)
# amplifies float rounding beyond the tolerance; a penalty counted twice would still show (about 1e-3).
METHODS = [*(o for o in OVERRIDES if not o.startswith(("replay.", "eval.ub"))), "replay.strategy=random+ewc+agem",
           "replay.ewc.fisher_samples=8", "replay.ewc.lambda=1"]


@pytest.fixture(scope="module")
def ewc_agem(tmp_path_factory):
    from citune.launch import launch_command, launch_env

    one = tmp_path_factory.mktemp("methods-one") / "run"
    _run([sys.executable, "-m", "citune", "run", str(TINY), "-o", str(one), *METHODS, _own_cache(one.parent)], _env())
    two = tmp_path_factory.mktemp("methods-two") / "run"
    _run(launch_command("cpu-2proc", ["run", str(TINY), "-o", str(two), *METHODS, _own_cache(two.parent)],
                        num_processes=2), launch_env("cpu-2proc", _env()))
    return one, two


def test_ewc_and_agem_under_two_processes_match_one(ewc_agem):
    one, two = ewc_agem
    stages = [json.loads((d / "manifest.json").read_text())["stages"] for d in (one, two)]
    assert stages[1][2]["distributed"] == "MULTI_CPU" and stages[1][2]["processes"] == 2
    assert stages[0][2]["projections"] == stages[1][2]["projections"]  # the same updates projected
    assert stages[0][1]["ewc_fisher_sum"] == pytest.approx(stages[1][1]["ewc_fisher_sum"], rel=1e-5)
    for a, b in zip(_stages(one)[1:], _stages(two)[1:]):
        la = [json.loads(x) for x in (a / "train_log.jsonl").read_text().splitlines()]
        lb = [json.loads(x) for x in (b / "train_log.jsonl").read_text().splitlines()]
        assert len(la) == len(lb)
        for ra, rb in zip(la, lb):
            assert abs(ra["loss"] - rb["loss"]) <= 1e-4 * max(1.0, abs(ra["loss"])), (a.name, ra, rb)
            # the penalty squares the drift from the anchors, which doubles the rounding's relative share
            assert ra.get("ewc", 0.0) == pytest.approx(rb.get("ewc", 0.0), rel=1e-3, abs=1e-7)
        assert any(r.get("ewc", 0.0) > 1e-4 for r in la) == (not a.name.startswith("01"))  # anchored after stage 1
