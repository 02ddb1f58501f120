"""Shared pieces of the benchmarks: machine description, measured matmul peak, result files."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

# Sleeping rather than spinning OpenMP workers: on a machine shared with other jobs a spinning
# worker waits for a descheduled sibling at every parallel region (10x slower steps seen here).
# Set before torch is imported; applies to every run of a benchmark alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SUPERNI = ROOT.parent / "shared" / "data" / "superni"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine(threads: int) -> dict:
    import torch

    from citune.engine.trainer import available_cores

    info = {"cpu": cpu_model(), "cores": available_cores(), "threads": threads, "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(), "load_average": load_average(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "note": "absolute numbers move with whatever else runs on the cores (see load_average); "
                    "compare the ratios measured in the same run"}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def matmul_peak(n: int = 2048, repeats: int = 5, inner: int = 4, dtype: str = "float32") -> dict:
    """Best observed GFLOP/s of an n×n×n torch.mm (2·n³ FLOPs) with the current thread count."""
    import torch

    dt = getattr(torch, dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(n, n, dtype=dt, device=device)
    b = torch.randn(n, n, dtype=dt, device=device)
    for _ in range(2):
        a @ b
    best = 0.0
    samples = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(inner):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        rate = 2 * n ** 3 * inner / (time.perf_counter() - t) / 1e9
        samples.append(round(rate, 1))
        best = max(best, rate)
    return {"gflops": round(best, 1), "samples": samples, "n": n, "dtype": dtype, "device": device}


def write_result(name: str, result: dict) -> Path:
    """benchmarks/results/<name>.json, or the file `name` names when it is a path (ends in .json)."""
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
              "date": time.strftime("%Y-%m-%d %H:%M:%S"), **result}
    path = Path(name) if name.endswith(".json") else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
