#!/usr/bin/env bash
# Weighted fine-tuning throughput on one GPU: a gpt2-medium sized model (24 layers x 1024, vocabulary 50,257,
# 355M parameters) built from its config (no download), bf16 autocast, one epoch over rated generations of
# varied length (about 2.4M tokens). Prints tokens/s and model FLOPs utilization (MFU). Under 5 minutes on an
# A100/H100-class GPU, most of it in the run itself.
#
#   bash benchmarks/gpu_tune.sh                       # defaults below
#   TEXTS=1000 BATCH=8 bash benchmarks/gpu_tune.sh    # smaller GPU
#   COMPILE=1 bash benchmarks/gpu_tune.sh             # also torch.compile the model
#   PEAK_TFLOPS=312 bash benchmarks/gpu_tune.sh       # your GPU's dense bf16 peak, when not in the table below
#
# Environment: TEXTS (4000), BATCH (16 sequences per micro-batch), MAX_LENGTH (1024), COMPILE (0),
# GRAD_CKPT (0), SHAPE (medium; "tiny" runs a 2 x 64 model, for checking the script on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

TEXTS="${TEXTS:-4000}" BATCH="${BATCH:-16}" MAX_LENGTH="${MAX_LENGTH:-1024}" COMPILE="${COMPILE:-0}" \
GRAD_CKPT="${GRAD_CKPT:-0}" SHAPE="${SHAPE:-medium}" PEAK_TFLOPS="${PEAK_TFLOPS:-}" \
PYTHONUNBUFFERED=1 python - <<'PY'
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.getcwd())
from mturk_tune import tiny_corpus
from mturk_tune.tuning import FeedbackExample, TuneConfig, tune

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets; matched against the device name.
PEAKS = [("H200", 989), ("H100 PCIe", 756), ("H100", 989), ("GH200", 989), ("A100", 312), ("A10G", 125),
         ("A10", 125), ("L40S", 362), ("L40", 181), ("L4", 121), ("RTX 4090", 165), ("RTX 3090", 71),
         ("V100", 125), ("B200", 2250)]
SHAPES = {"medium": dict(n_layer=24, n_embd=1024, n_head=16, vocab_size=50257),
          "tiny": dict(n_layer=2, n_embd=64, n_head=2, vocab_size=1024)}

texts, batch, max_length = int(os.environ["TEXTS"]), int(os.environ["BATCH"]), int(os.environ["MAX_LENGTH"])
shape = SHAPES[os.environ["SHAPE"]]
if not torch.cuda.is_available() and os.environ["SHAPE"] != "tiny":
    sys.exit("gpu_tune.sh needs a CUDA GPU (SHAPE=tiny checks the script on a CPU)")
device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
peak_tflops = float(os.environ["PEAK_TFLOPS"]) if os.environ["PEAK_TFLOPS"] else next(
    (peak for key, peak in PEAKS if key in device_name), None)


def build_model(out_dir: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    corpus = tiny_corpus.corpus(4000, seed=11)
    tokenizer = GPT2Tokenizer().train_new_from_iterator(corpus, vocab_size=min(shape["vocab_size"], 4096))
    tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.eos_token_id
    config = GPT2Config(n_positions=max(1024, max_length), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **shape)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def examples(n: int) -> list[FeedbackExample]:
    """Rated generations of 60 to ~1000 tokens: a first sentence as prompt, 1-24 corpus texts as completion."""
    rng = random.Random(0)
    pool = tiny_corpus.corpus(3000, seed=5)
    out = []
    for i in range(n):
        first = pool[i % len(pool)]
        cut = first.find(". ") + 1
        rest = [pool[rng.randrange(len(pool))] for _ in range(rng.randint(1, 24))]
        out.append(FeedbackExample(f"item-{i}", first[:cut], " ".join([first[cut:]] + rest),
                                   float(rng.randint(1, 5)), 1.0))
    return out


with tempfile.TemporaryDirectory() as tmp:
    model_dir = Path(tmp) / "model"
    started = time.perf_counter()
    build_model(model_dir)
    feedback = examples(texts)
    config = TuneConfig(scheme="exponential", learning_rate=1e-4, batch_size=batch, max_length=max_length,
                        epochs=1, eval_fraction=0.0, eval_prompts=0, bf16="auto", warmup=0.05, save_every=0,
                        compile=os.environ["COMPILE"] == "1", gradient_checkpointing=os.environ["GRAD_CKPT"] == "1")
    print(f"{device_name}: GPT-2 {shape['n_layer']}x{shape['n_embd']}, vocab {shape['vocab_size']}, {texts} texts, "
          f"batch {batch}, compile={config.compile}, set up in {time.perf_counter() - started:.0f} s", flush=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    record = tune(str(model_dir), feedback, Path(tmp) / "run", config,
                  progress=lambda step, total: step % 20 == 0 and print(f"step {step}/{total}", flush=True)).record

training = record["training"]
history = training["losses"]
# Steady state: leave out the first 10% of steps (CUDA warm-up, autotuning, compilation).
skip = max(1, len(history) // 10)
tokens = sum(h["tokens"] for h in history[skip:])
seconds = history[-1]["seconds"] - history[skip - 1]["seconds"]
tok_s = tokens / seconds
body = shape["n_layer"] * 12 * shape["n_embd"] ** 2
learned_share = record["data"]["learned_tokens_per_epoch"] / record["data"]["tokens_per_epoch"]
mean_length = record["data"]["tokens_per_epoch"] / record["data"]["sequences"]
# Useful training FLOPs per token: 6 N for the body, 6 d V for the head (only on learned tokens), and
# PaLM's 12 L d T for attention.
flops_per_token = (6 * body + 6 * shape["n_embd"] * shape["vocab_size"] * learned_share
                   + 12 * shape["n_layer"] * shape["n_embd"] * mean_length)
achieved_tflops = tok_s * flops_per_token / 1e12
mfu = achieved_tflops / peak_tflops if peak_tflops else None
peak_gb = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
print(f"{tok_s:,.0f} tokens/s (steady state; {training['tokens_per_s']:,.0f} over the whole run), "
      f"{achieved_tflops:.1f} TFLOP/s of model compute"
      + (f", MFU {mfu:.1%} of {peak_tflops:g} TFLOP/s bf16" if mfu else ", MFU unknown: set PEAK_TFLOPS")
      + (f", peak GPU memory {peak_gb:.1f} GiB" if peak_gb else "")
      + f", pad efficiency {training['pad_efficiency']:.1%}, {training['mixed_precision']}")
print(json.dumps({"device": device_name, "tok_s": round(tok_s, 1), "tok_s_whole_run": training["tokens_per_s"],
                  "tflops": round(achieved_tflops, 2), "mfu": round(mfu, 4) if mfu else None,
                  "peak_gb": round(peak_gb, 2) if peak_gb else None, "pad_efficiency": training["pad_efficiency"],
                  "steps": training["steps"], "tokens": training["tokens"], "mixed_precision": training["mixed_precision"],
                  "compile": config.compile}))
PY
