"""benchmarks/eval_throughput.py on the tiny model: citune against batched `model.generate` on the same
prompts, whole passes with the variants or (`--ratio-only`) the two alone, batch by batch."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("ratio_only", [True, False])
def test_eval_throughput_compares_with_batched_generate_on_the_same_outputs(superni_dir, tmp_path, ratio_only):
    out = tmp_path / "eval.json"
    args = [sys.executable, str(ROOT / "benchmarks" / "eval_throughput.py"), "--superni", str(superni_dir), "--model",
            "tiny", "--tasks", "2", "--per-task", "4", "--hf-batched", "--no-single", "--out", str(out)]
    proc = subprocess.run(args + (["--ratio-only"] if ratio_only else []), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    variants = {"citune_batched_lora_not_merged", "citune_batched_no_prefix_sharing", "citune_batched_task_by_task"}
    assert set(result["runs"]) == {"citune_batched", "hf_batched"} | (set() if ratio_only else variants)
    assert result["identical"] == result["data"]["instances"] == 8
    assert result["ratio_hf_batched"] > 0 and (result["pooling_ratio"] is None) == ratio_only
