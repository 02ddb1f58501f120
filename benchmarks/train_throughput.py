"""Training throughput: one SuperNI stage, SmolLM2-135M + LoRA, citune's trainer against a plain
Hugging Face Trainer and TRL's SFTTrainer (padding-free) on the same examples, model, LoRA config and
hyper-parameters.

    python benchmarks/train_throughput.py [--max-examples N] [--threads T] [--task-index 0]
                                          [--order citune,hf,hf,citune] [--mixed-precision bf16]

Both runs start from the same weights (same seed, so the same LoRA initialisation) and see the
same tokenised examples (citune's prompt encoder; labels -100 on the prompt). The default order
citune, hf, hf, citune (each a fresh model) cancels a load that drifts during the run on a shared
machine; each system's tokens/s is its total tokens over its total seconds.
- citune: `citune.engine.trainer.train_stage` (length-grouped left-padded batches, logits only over
  the response tail, fused AdamW, LoRA dropout from 16-bit random numbers: models/dropout.py);
  `citune-torch-dropout` in --order is the same with PEFT's torch.nn.Dropout, to measure that part;
- reference: `transformers.Trainer` with `DataCollatorForSeq2Seq` (pad to the longest of a random
  batch, right padding), the model's own loss (logits over every position), default optimizer
  (fused AdamW), PEFT's own LoRA dropout, the same lr, batch size, epochs, warmup, weight decay,
  clipping and cosine schedule.

Tokens per second = non-pad tokens of the training examples processed per wall-clock second of the
training call (encoding and data loading included for both). Model FLOPs utilisation (MFU) =
useful model FLOPs per second / the float32 (bfloat16 with --mixed-precision bf16) matrix-multiply
peak measured here (best of a few timed 2048×2048 `torch.mm`, same thread count), where the useful
FLOPs of an example of length L with R response tokens are, the base weights being frozen (no
weight gradients):
    (4·N_body + 6·N_lora)·L + 6·layers·d_attn·L² (causal attention, forward + backward) + 4·V·d·R
N_body = base parameters without the embedding / tied LM head; the LM head counts only at the R
positions whose logits the response-only loss needs. The same definition is used for both runs.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SUPERNI, load_average, machine, matmul_peak, write_result  # noqa: E402


def flop_model(model) -> dict:
    cfg = model.config if not hasattr(model, "get_base_model") else model.get_base_model().config
    n_body = n_lora = 0
    for name, p in model.named_parameters():
        if "lora_" in name:
            n_lora += p.numel()
        elif "embed_tokens" not in name and "lm_head" not in name:
            n_body += p.numel()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return {"n_body": n_body, "n_lora": n_lora, "layers": cfg.num_hidden_layers, "d": cfg.hidden_size,
            "d_attn": cfg.num_attention_heads * head_dim, "vocab": cfg.vocab_size}


def useful_flops(fm: dict, length: int, response: int) -> float:
    return ((4 * fm["n_body"] + 6 * fm["n_lora"]) * length + 6 * fm["layers"] * fm["d_attn"] * length ** 2
            + 4 * fm["vocab"] * fm["d"] * response)


def load_stage(args):
    from citune.config import load_config
    from citune.data import build_stream

    cfg = load_config(None, ["data.kind=superni", f"data.superni.root={args.superni}", f"train.epochs={args.epochs}",
                             f"train.batch_size={args.batch_size}", *([f"model.name={args.model}"] if args.model else [])])
    stream = build_stream(cfg)
    task = stream.tasks[args.task_index]
    train = task.train[: args.max_examples] if args.max_examples else task.train
    return cfg, task.name, train


def fresh_model(cfg, seed: int, fast_dropout: bool = True):
    from citune.models import load_model
    from citune.paths import cache_root

    model_cfg = cfg.model.model_copy(deep=True)
    model_cfg.lora.fast_dropout = fast_dropout
    return load_model(model_cfg, cache_root(), seed=seed)


def run_citune(cfg, instances, seed: int, precision: str, fast_dropout: bool = True) -> dict:
    import torch
    from accelerate import Accelerator

    from citune.types import TrainExample
    from citune.engine.trainer import train_stage

    bundle = fresh_model(cfg, seed, fast_dropout)
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision)
    model = acc.prepare(bundle.model)
    start = time.perf_counter()
    stats = train_stage(acc, bundle, [TrainExample(x) for x in instances], cfg.train, seed, model=model)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    losses = [r["loss"] for r in stats.log]
    return {"seconds": round(seconds, 2), "steps": stats.steps, "mean_loss": round(sum(losses) / len(losses), 4),
            "padding_share": stats.padding_share}


def trainer_arguments(t, seed: int, precision: str, output_dir: str) -> dict:
    """The hyper-parameters of citune's stage as `TrainingArguments` keywords (shared by the Trainer and
    TRL's SFTConfig, its subclass): no saving, logging or evaluation inside the timed call."""
    import torch

    return dict(output_dir=output_dir, per_device_train_batch_size=t.batch_size,
                gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, num_train_epochs=t.epochs,
                lr_scheduler_type="cosine", warmup_steps=t.warmup_ratio, weight_decay=t.weight_decay,
                max_grad_norm=t.max_grad_norm, seed=seed, use_cpu=not torch.cuda.is_available(), save_strategy="no",
                eval_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True,
                dataloader_num_workers=0, bf16=precision == "bf16")


def run_hf_trainer(cfg, rows: list[dict], seed: int, precision: str) -> dict:
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    bundle = fresh_model(cfg, seed, fast_dropout=False)  # PEFT's own LoRA dropout
    tok = AutoTokenizer.from_pretrained(bundle.base_dir)  # a plain tokenizer: default (right) padding
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    padded = {"positions": 0, "batches": 0}

    def collate(features):
        batch = collator(features)
        padded["positions"] += batch["input_ids"].numel()
        padded["batches"] += 1
        return batch

    t = cfg.train
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(**trainer_arguments(cfg.train, seed, precision, tmp))
        data = [{"input_ids": r["input_ids"], "attention_mask": [1] * len(r["input_ids"]), "labels": r["labels"]}
                for r in rows]
        trainer = Trainer(model=bundle.model, args=args, train_dataset=data, data_collator=collate)
        start = time.perf_counter()
        out = trainer.train()
        seconds = time.perf_counter() - start
    real = sum(len(r["input_ids"]) for r in rows) * t.epochs
    return {"seconds": round(seconds, 2), "steps": out.global_step, "mean_loss": round(out.training_loss, 4),
            "padding_share": round(1 - real / padded["positions"], 4) if padded["positions"] else 0.0}


def run_trl_sft(cfg, rows: list[dict], seed: int, precision: str) -> dict:
    """TRL's SFTTrainer in its fastest documented configuration for variable-length data: padding-free
    batches (each batch flattened into one sequence, boundaries from position_ids; transformers masks
    across them under sdpa too), the same tokenised rows and labels (-100 on the prompt), fused AdamW."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    bundle = fresh_model(cfg, seed, fast_dropout=False)  # PEFT's own LoRA dropout
    data = Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(**trainer_arguments(cfg.train, seed, precision, tmp), padding_free=True, max_length=None,
                         dataset_kwargs={"skip_prepare_dataset": True})
        trainer = SFTTrainer(model=bundle.model, args=args, train_dataset=data, processing_class=bundle.tokenizer)
        start = time.perf_counter()
        out = trainer.train()
        seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "steps": out.global_step, "mean_loss": round(out.training_loss, 4),
            "padding_share": 0.0}


def cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--superni", default=str(SUPERNI))
    ap.add_argument("--task-index", type=int, default=0, help="which stage of the SuperNI-16 stream (0 = first)")
    ap.add_argument("--max-examples", type=int, default=None, help="train on the first N examples of the stage")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    ap.add_argument("--order", default="citune,trl,hf,hf,trl,citune",
                    help="which runs, in this order (citune, trl, hf, citune-torch-dropout)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model", default=None, help="model.name (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--mixed-precision", choices=["no", "bf16"], default="no",
                    help="bf16: autocast for both systems, and the peak is measured in bfloat16")
    ap.add_argument("--out", default="train_throughput")
    args = ap.parse_args()

    from citune.engine.batching import encode_examples
    from citune.types import TrainExample
    from citune.engine.trainer import configure_threads, peak_memory_mb, reset_peak_memory

    threads = configure_threads(args.threads, 1)
    cfg, task, instances = load_stage(args)
    probe = fresh_model(cfg, args.seed)
    fm = flop_model(probe.model)
    rows = encode_examples(probe.encoder, [TrainExample(x) for x in instances], cfg.train.max_length)
    del probe
    lengths = [len(r["input_ids"]) for r in rows]
    responses = [sum(1 for v in r["labels"][1:] if v != -100) for r in rows]
    tokens = sum(lengths) * cfg.train.epochs
    flops = sum(useful_flops(fm, n, r) for n, r in zip(lengths, responses)) * cfg.train.epochs
    print(f"stage {task}: {len(rows)} examples, {tokens} tokens, mean length {sum(lengths) / len(rows):.1f}, "
          f"{threads} threads", flush=True)

    peak_dtype = "bfloat16" if args.mixed_precision == "bf16" else "float32"
    peaks = [matmul_peak(dtype=peak_dtype)]
    print(f"matmul peak {peaks[0]['gflops']} GFLOP/s", flush=True)
    runs: dict[str, list[dict]] = {}
    for name in [s.strip() for s in args.order.split(",") if s.strip()]:
        load_before = load_average()
        reset_peak_memory()
        cpu_before = cpu_seconds()
        if name in ("citune", "citune-torch-dropout"):
            res = run_citune(cfg, instances, args.seed, args.mixed_precision, fast_dropout=name == "citune")
        elif name == "trl":
            res = run_trl_sft(cfg, rows, args.seed, args.mixed_precision)
        else:
            res = run_hf_trainer(cfg, rows, args.seed, args.mixed_precision)
        cpu = cpu_seconds() - cpu_before  # this process's user + system time, all threads (model loading included)
        res.update(tokens=tokens, tokens_per_second=round(tokens / res["seconds"], 1), load_average_before=load_before,
                   load_average_after=load_average(), cpu_seconds=round(cpu, 1), **peak_memory_mb())
        runs.setdefault(name, []).append(res)
        print(name, res, flush=True)
    peaks.append(matmul_peak(dtype=peak_dtype))
    peak = max(p["gflops"] for p in peaks)
    summary = {}
    for name, rs in runs.items():
        seconds = sum(r["seconds"] for r in rs)
        summary[name] = {"runs": len(rs), "tokens": tokens * len(rs), "seconds": round(seconds, 2),
                         "tokens_per_second": round(tokens * len(rs) / seconds, 1),
                         "cpu_seconds": round(sum(r["cpu_seconds"] for r in rs), 1),
                         "mfu": round(flops * len(rs) / seconds / (peak * 1e9), 4),
                         "padding_share": rs[0]["padding_share"], "mean_loss": rs[0]["mean_loss"],
                         "peak_rss_mb": max(r.get("peak_rss_mb", 0) for r in rs)}
    result = {
        "machine": machine(threads),
        "stage": {"task": task, "examples": len(rows), "epochs": cfg.train.epochs, "tokens": tokens,
                  "mean_length": round(sum(lengths) / len(rows), 1), "mean_response": round(sum(responses) / len(rows), 2)},
        "model": {"name": cfg.model.name, "finetune": cfg.model.finetune, "lora": cfg.model.lora.model_dump(),
                  **fm},
        "train": cfg.train.model_dump(), "mixed_precision": args.mixed_precision,
        "peak_gflops": peak, "peak_measurements": peaks,
        "useful_tflop_per_run": round(flops / 1e12, 3),
        "summary": summary,
        "runs": runs,
        "definition": "tokens/s = non-pad training tokens / wall-clock seconds of the training call "
                      "(ratio_cpu_time: the same with this process's CPU seconds); "
                      f"MFU = useful model FLOPs (see docstring) / seconds / measured {peak_dtype} matmul peak",
    }
    if "citune" in summary and "hf" in summary:
        result["ratio"] = round(summary["citune"]["tokens_per_second"] / summary["hf"]["tokens_per_second"], 3)
        # The same ratio in CPU time (user + system of this process): less sensitive to other jobs.
        result["ratio_cpu_time"] = round(summary["hf"]["cpu_seconds"] / summary["citune"]["cpu_seconds"], 3)
        print(f"citune / HF Trainer = {result['ratio']}×; MFU citune {summary['citune']['mfu']:.1%}, "
              f"HF {summary['hf']['mfu']:.1%} of {peak} GFLOP/s")
    if "citune" in summary and "trl" in summary:
        result["ratio_trl"] = round(summary["citune"]["tokens_per_second"] / summary["trl"]["tokens_per_second"], 3)
        result["ratio_trl_cpu_time"] = round(summary["trl"]["cpu_seconds"] / summary["citune"]["cpu_seconds"], 3)
        print(f"citune / TRL SFTTrainer (padding-free) = {result['ratio_trl']}×; MFU TRL {summary['trl']['mfu']:.1%}")
    if "citune" in summary and "citune-torch-dropout" in summary:
        result["ratio_fast_dropout"] = round(summary["citune"]["tokens_per_second"]
                                             / summary["citune-torch-dropout"]["tokens_per_second"], 3)
        print(f"citune with fast / torch LoRA dropout = {result['ratio_fast_dropout']}×")
    print("wrote", write_result(args.out, result))


if __name__ == "__main__":
    main()
