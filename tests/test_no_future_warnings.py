"""citune uses the current transformers/PEFT API: no FutureWarning (or deprecation notice) reaches the
user from what citune calls (the KV-cache keyword of generation, LoRA wrapping, training, KPIG scoring)."""
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny.yaml"
# Python warnings and transformers' logged notices ("`past_key_values`/`cache_params` are deprecated")
DEPRECATED = re.compile(r"FutureWarning|DeprecationWarning|\b(is|are) deprecated\b")


def test_lora_kpig_run_prints_no_future_warning(tmp_path):
    """A LoRA run with KPIG replay on the tiny model: LoRA wrapping, training, greedy generation with
    the KV cache and shared prefixes (evaluation), and information-gain scoring (`prefill_shared`)."""
    env = {**os.environ, "CITUNE_QUIET": "1", "PYTHONWARNINGS": "error::FutureWarning"}
    proc = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-m", "citune", "run", str(TINY), "-o", str(tmp_path / "run"),
         "-q", "model.finetune=lora", "replay.strategy=kpig", "replay.kpig.probe=4", "replay.kpig.pool=6",
         "data.synthetic.families=[sentiment,parity]", "train.epochs=1"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = [line for line in (proc.stdout + proc.stderr).splitlines() if DEPRECATED.search(line)]
    assert not found, "\n".join(found)
    assert (tmp_path / "run" / "stages" / "02-parity" / "replay.jsonl").is_file()  # KPIG did select


def test_greedy_decoding_paths_warn_nothing(tiny_bundle):
    """Every decoding path in-process, with FutureWarnings as errors: one plain prefill, shared
    prefixes, and `model.generate`."""
    from citune.models.generate import greedy_batch, hf_generate_batch, stop_ids
    from citune.models.forward import sharing_pays

    model, tok = tiny_bundle.model, tiny_bundle.tokenizer
    head = tok("Read the question below and answer it in one word, without explanation.",
               add_special_tokens=False)["input_ids"]
    prompts = [head + tok(t, add_special_tokens=False)["input_ids"] for t in ("Is it red?", "What colour is snow?")]
    assert sharing_pays(prompts, [len(head)] * len(prompts))  # the shared-prefix path does run
    args = (model, prompts, 4, tok.pad_token_id, stop_ids(tiny_bundle))
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            plain = greedy_batch(*args)
            shared = greedy_batch(*args, prefix_lens=[len(head)] * len(prompts))
            reference = hf_generate_batch(*args)
    finally:
        model.train(was_training)
    assert plain == shared == reference
