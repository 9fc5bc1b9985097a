"""Batched generation (mturk_tune.generation) against the one-prompt-at-a-time loop of the original example.

The naive path does what the original example code does for each prompt: tokenize, `model.generate`, decode.
The batched path is `generate_samples`. A third row, plain batched `model.generate` with left padding, shows
how much of the gain is batching and how much the lean decoding loop. All paths sample with the same settings
on the same model and prompts; throughput counts generated tokens before EOS only (no padding, no EOS).

    python benchmarks/generation.py                 # built-in tiny model, 64 prompts, batch 64, 1 thread
    python benchmarks/generation.py --model gpt2 --prompts 16 --batch-size 16

Prints a table, then one JSON line with batched_tok_s, naive_tok_s and ratio (batched / naive).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

from mturk_tune import tiny_corpus
from mturk_tune.generation import generate_samples
from mturk_tune.models import BUILTIN_TINY, load_model_and_tokenizer


def benchmark_prompts(count: int, seed: int = 7) -> list[str]:
    """Openings of reviews and stories, 2 to 14 words long, so that batches need padding."""
    rng = random.Random(seed)
    texts = tiny_corpus.corpus(count, seed=seed)
    return [" ".join(text.split()[: rng.randint(2, 14)]) for text in texts]


def tokens_before_eos(new_ids: list[int], eos_ids: set[int]) -> int:
    return next((i for i, token in enumerate(new_ids) if token in eos_ids), len(new_ids))


def run_naive(model, tokenizer, prompts, settings) -> tuple[int, list[str]]:
    """The original example: for each prompt, tokenize, generate, decode."""
    eos_ids = {tokenizer.eos_token_id}
    total, texts = 0, []
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
        output = model.generate(**inputs, **settings)
        new_ids = output[0, inputs["input_ids"].shape[1] :].tolist()
        total += tokens_before_eos(new_ids, eos_ids)
        texts.append(tokenizer.decode(new_ids, skip_special_tokens=True).strip())
    return total, texts


def run_hf_batched(model, tokenizer, prompts, settings, batch_size) -> tuple[int, list[str]]:
    """Plain `model.generate` on left-padded batches, in the given prompt order."""
    eos_ids = {tokenizer.eos_token_id}
    total, texts = 0, []
    for first in range(0, len(prompts), batch_size):
        inputs = tokenizer(prompts[first : first + batch_size], return_tensors="pt", padding=True,
                           padding_side="left").to(model.device)
        output = model.generate(**inputs, **settings)
        for row in output[:, inputs["input_ids"].shape[1] :].tolist():
            total += tokens_before_eos(row, eos_ids)
            texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return total, texts


def run_batched(model, tokenizer, prompts, args) -> tuple[int, list[str]]:
    samples = generate_samples(model, tokenizer, prompts, n=1, max_new_tokens=args.max_new_tokens, seed=args.seed,
                               batch_size=args.batch_size, temperature=args.temperature, top_p=args.top_p)
    return sum(s.n_tokens for s in samples), [s.text for s in samples]


def timed_interleaved(paths: dict, repeats: int) -> dict:
    """Median tokens/s of each path over `repeats` rounds, with the token count and texts of its last run.

    Each round runs every path once, so a burst of load from other processes hits all paths alike
    instead of skewing the ratio.
    """
    rates = {name: [] for name in paths}
    last = {}
    for _ in range(repeats):
        for name, function in paths.items():
            started = time.perf_counter()
            tokens, texts = function()
            rates[name].append(tokens / (time.perf_counter() - started))
            last[name] = (tokens, texts)
    return {name: (statistics.median(rates[name]), *last[name]) for name in paths}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=BUILTIN_TINY, help="hub name, local directory or builtin:tiny")
    parser.add_argument("--prompts", type=int, default=64, help="number of prompts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads: the cores free for this run")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (each runs every path); medians reported")
    parser.add_argument("--skip-hf-batched", action="store_true", help="leave out the plain batched generate row")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer(args.model, device=args.device)
    prompts = benchmark_prompts(args.prompts)
    settings = dict(do_sample=True, temperature=args.temperature, top_p=args.top_p,
                    max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id)

    # One untimed pass of each path on a few prompts, so no path pays for first-call setup.
    run_naive(model, tokenizer, prompts[:2], settings)
    run_batched(model, tokenizer, prompts[:2], args)
    torch.manual_seed(args.seed)

    paths = {"naive (per-prompt generate)": lambda: run_naive(model, tokenizer, prompts, settings)}
    if not args.skip_hf_batched:
        paths["HF generate, batched"] = lambda: run_hf_batched(model, tokenizer, prompts, settings, args.batch_size)
    paths["mturk_tune batched"] = lambda: run_batched(model, tokenizer, prompts, args)
    rows = [(name, *result) for name, result in timed_interleaved(paths, args.repeats).items()]

    naive_rate, batched_rate = rows[0][1], rows[-1][1]
    print(f"model {args.model} | {len(prompts)} prompts | batch {args.batch_size} | max_new_tokens "
          f"{args.max_new_tokens} | top_p {args.top_p} | temperature {args.temperature} | threads {args.threads} | "
          f"device {args.device} | median of {args.repeats}")
    print(f"{'path':<30} {'tokens':>8} {'tok/s':>10} {'vs naive':>9}")
    for name, rate, tokens, _ in rows:
        print(f"{name:<30} {tokens:>8} {rate:>10.0f} {rate / naive_rate:>8.1f}x")
    print("example completions:")
    for label, texts in (("naive", rows[0][3]), ("batched", rows[-1][3])):
        print(f"  {label:<8} {prompts[0]!r} -> {texts[0]!r}")

    result = {
        "model": args.model, "prompts": len(prompts), "batch_size": args.batch_size, "threads": args.threads,
        "device": args.device, "max_new_tokens": args.max_new_tokens,
        "batched_tok_s": round(batched_rate, 1), "naive_tok_s": round(naive_rate, 1),
        "ratio": round(batched_rate / naive_rate, 2),
    }
    if not args.skip_hf_batched:
        result["hf_batched_tok_s"] = round(rows[1][1], 1)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
