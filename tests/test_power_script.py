"""`benchmarks/power.py`'s variance components against hand-computed values."""
import importlib
import math
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def power(monkeypatch):
    """The script as a module, imported in the test (not at collection) so that the benchmarks'
    OMP_WAIT_POLICY default does not leak into the other tests of this worker."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    return importlib.import_module("power")


def test_the_seed_variance_upper_limit_is_the_chi_square_bound_less_the_instance_noise(power):
    # seed differences 0, 2, 4: sample variance 4 with 2 degrees of freedom; chi2_{0.05, 2} = -2 ln 0.95
    upper = power.seed_variance_upper([0.0, 2.0, 4.0], within=5.0)
    assert upper == pytest.approx(2 * 4 / (-2 * math.log(0.95)) - 5.0, rel=1e-9)  # 72.98
    assert power.seed_variance_upper([1.0, 1.0], within=5.0) == 0.0  # floored
    assert power.seed_variance_upper([1.0], within=5.0) is None


def test_half_width_uses_the_named_seed_variance(power):
    c = {"seed_variance": 0.0, "seed_variance_upper": 20.0, "instance_variance_sum": 160.0}
    assert power.half_width(c, n=32, seeds=5) == pytest.approx(1.96 * 1.0)
    assert power.half_width(c, n=32, seeds=5, seed_variance="seed_variance_upper") == pytest.approx(1.96 * math.sqrt(5.0))
