"""Training throughput of mturk-tune's weighted fine-tuning against TRL's SFTTrainer, on CPU.

The same tiny GPT-2 (4 layers x 256, built from config, no download) trains for one epoch on the same
prompt/completion texts three ways, each in its own subprocess (so peak memory, ru_maxrss, is each run's own):

- ours: `mturk_tune.tuning.tune` with per-item weights (exponential scheme: every item counts, unequally);
- trl: TRL's SFTTrainer in its default configuration (random batches, completion-only loss);
- trl_grouped: the same with length-grouped batches (`train_sampling_strategy="group_by_length"`, which is
  what `group_by_length=True` became in transformers 5).

Before timing, one batch checks that the loss definitions agree when every weight is 1: TRL's loss is the mean
over the batch's completion tokens, ours the mean over sequences of each sequence's own token mean. So (a) our
per-token losses, averaged over all tokens, equal TRL's batch loss, and (b) our batch loss equals the mean of
TRL's losses on each sequence alone.

Tokens per second count real (non-padding) tokens of the training sequences, per second of wall-clock time
(`*_tok_s`) and per second of the process's CPU time (`*_cpu_tok_s`: steadier on a shared machine, where
other jobs stretch wall-clock time). Model FLOPs utilization (MFU) is the model's useful training FLOPs (6 x
body parameters per token, 6 x head parameters per learned token, plus attention) per CPU second over the
peak of the same threads, measured with a large fp32 matrix product.

    python benchmarks/tune.py                 # 2,000 texts, 1 thread, batch 16 (a few minutes)
    python benchmarks/tune.py --texts 300     # quick look

Needs `pip install "trl>=1.0"`. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL_SHAPE = dict(n_layer=4, n_embd=256, n_head=4, n_positions=512)
VOCAB_SIZE = 1024


def build_model(out_dir: Path) -> None:
    """A randomly initialised GPT-2 4 x 256 with GPT-2's default dropout and a 1,024-token BPE."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    from mturk_tune import tiny_corpus

    tokenizer = GPT2Tokenizer().train_new_from_iterator(tiny_corpus.corpus(4000, seed=11), vocab_size=VOCAB_SIZE)
    tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.eos_token_id
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, **MODEL_SHAPE)
    GPT2LMHeadModel(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def build_examples(n_texts: int, seed: int = 0) -> list[dict]:
    """Prompt = a text's first sentence; completion = its rest plus 0-3 more texts (varied lengths); a Likert score."""
    from mturk_tune import tiny_corpus

    rng = random.Random(seed)
    pool = tiny_corpus.corpus(n_texts * 3, seed=seed + 1)
    examples = []
    for i in range(n_texts):
        first = pool[i]
        cut = first.find(". ") + 1 or len(first) // 2
        extra = [pool[n_texts + rng.randrange(2 * n_texts)] for _ in range(rng.choice([0, 0, 0, 1, 1, 2]))]
        examples.append({
            "task": f"item-{i}", "prompt": first[:cut], "completion": " ".join([first[cut:]] + extra),
            "score": float(rng.randint(1, 5)), "confidence": round(rng.uniform(0.4, 1.0), 2),
        })
    return examples


# ---------------------------------------------------------------------------------------------------------
# Workers (each runs in its own process)


def run_ours(model_dir: Path, examples: list[dict], args) -> dict:
    from mturk_tune.tuning import FeedbackExample, TuneConfig, tune

    feedback = [FeedbackExample(**ex) for ex in examples]
    config = TuneConfig(scheme="exponential", temperature=1.0, learning_rate=2e-5, batch_size=args.batch_size,
                        epochs=1, eval_fraction=0.0, eval_prompts=0, seed=0, max_length=512, threads=args.threads,
                        **({} if args.micro_batch_tokens is None else {"micro_batch_tokens": args.micro_batch_tokens}))
    with tempfile.TemporaryDirectory() as out:
        record = tune(str(model_dir), feedback, Path(out) / "run", config).record
    training = record["training"]
    return {"tok_s": training["tokens_per_s"], "tokens": training["tokens"], "seconds": training["seconds"],
            "cpu_seconds": training["cpu_seconds"],
            "pad_efficiency": training["pad_efficiency"], "learned_tokens": record["data"]["learned_tokens_per_epoch"],
            "steps": training["steps"]}


def _trl_trainer(model_dir: Path, examples: list[dict], args, grouped: bool, out: str):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = Dataset.from_list([{"prompt": ex["prompt"], "completion": ex["completion"]} for ex in examples])
    options = dict(output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=1, learning_rate=2e-5,
                   max_length=512, bf16=False, use_cpu=True, report_to=[], save_strategy="no", logging_steps=50,
                   seed=0, disable_tqdm=True)
    if grouped:
        options["train_sampling_strategy"] = "group_by_length"
    return SFTTrainer(model=model, args=SFTConfig(**options), train_dataset=dataset, processing_class=tokenizer)


def run_trl(model_dir: Path, examples: list[dict], args, grouped: bool) -> dict:
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_train_begin(self, *_, **__):
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_train_end(self, *_, **__):
            self.seconds = time.perf_counter() - self.start
            self.cpu_seconds = time.process_time() - self.cpu_start

    with tempfile.TemporaryDirectory() as out:
        trainer = _trl_trainer(model_dir, examples, args, grouped, out)
        clock = Clock()
        trainer.add_callback(clock)
        trainer.train()
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    return {"tok_s": round(tokens / clock.seconds, 1), "tokens": tokens, "seconds": round(clock.seconds, 3),
            "cpu_seconds": round(clock.cpu_seconds, 3)}


def check_losses(model_dir: Path, examples: list[dict], args) -> dict:
    """Our loss and TRL's on the same 8 sequences with every weight 1 (see the module docstring)."""
    import numpy as np
    import torch

    from mturk_tune.tune_data import FeedbackExample, tokenize_examples
    from mturk_tune.tune_loss import WeightedLMLoss, collate

    batch_examples = examples[:8]
    with tempfile.TemporaryDirectory() as out:
        trainer = _trl_trainer(model_dir, batch_examples, args, grouped=False, out=out)
        model, tokenizer = trainer.model, trainer.processing_class
        model.eval()
        rows = [trainer.train_dataset[i] for i in range(len(batch_examples))]
        with torch.no_grad():
            trl_batch = float(trainer.compute_loss(model, trainer.data_collator(rows)))
            trl_single = [float(trainer.compute_loss(model, trainer.data_collator([row]))) for row in rows]
        feedback = [FeedbackExample(**ex) for ex in batch_examples]
        data = tokenize_examples(tokenizer, feedback, np.ones(len(feedback)), [], max_length=512)
        same_tokens = all(list(ours) == list(row["input_ids"]) for ours, row in zip(data.token_ids, rows))
        coefficients = [1.0 / len(feedback)] * len(feedback)
        batch = collate(data, np.arange(len(feedback)), coefficients, tokenizer.pad_token_id)
        scorer = WeightedLMLoss(model)
        with torch.no_grad():
            ours, _ = scorer(**batch.as_inputs())
            token_losses = scorer.token_losses(batch.input_ids, batch.predict_index, batch.target_ids)
    token_mean = float(token_losses.mean())
    return {
        "same_token_ids": same_tokens,
        "trl_batch_loss": trl_batch,
        "ours_token_mean": token_mean,
        "ours_sequence_mean": float(ours),
        "trl_mean_of_single_sequences": float(np.mean(trl_single)),
        "token_means_agree": bool(abs(token_mean - trl_batch) < 1e-4),
        "sequence_means_agree": bool(abs(float(ours) - np.mean(trl_single)) < 1e-4),
    }


def worker_main(args) -> None:
    model_dir, examples = Path(args.model), json.loads(Path(args.data).read_text())
    if args.worker == "ours":
        result = run_ours(model_dir, examples, args)
    elif args.worker == "check":
        result = check_losses(model_dir, examples, args)
    else:
        result = run_trl(model_dir, examples, args, grouped=args.worker == "trl_grouped")
    result["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(args.result).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------------------
# Orchestration


def run_worker(name: str, model_dir: Path, data: Path, work: Path, args) -> dict:
    result = work / f"{name}.json"
    command = [sys.executable, __file__, "--worker", name, "--model", str(model_dir), "--data", str(data),
               "--result", str(result), "--threads", str(args.threads), "--batch-size", str(args.batch_size)]
    if args.micro_batch_tokens is not None:
        command += ["--micro-batch-tokens", str(args.micro_batch_tokens)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
           "ACCELERATE_USE_CPU": "true"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"{name} failed:\n{completed.stderr[-4000:]}")
    return json.loads(result.read_text())


def peak_flops(threads: int) -> float:
    """fp32 FLOP/s of a 2048^3 matrix product on `threads` threads: the practical peak of those cores."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best


def training_flops(tokens: int, learned_tokens: int, mean_length: float) -> float:
    """Useful FLOPs of one training pass: 6 N per token for the body, 6 d V per learned token for the head, and
    PaLM's 12 L d T per token for attention (T the mean sequence length)."""
    d, layers = MODEL_SHAPE["n_embd"], MODEL_SHAPE["n_layer"]
    body = layers * 12 * d * d  # attention and MLP matrices per layer (biases and norms are negligible)
    return 6 * body * tokens + 6 * d * VOCAB_SIZE * learned_tokens + 12 * layers * d * mean_length * tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1, help="time each variant this many times, keep the best")
    parser.add_argument("--micro-batch-tokens", type=int, default=None,
                        help="ours: run micro-batches in pieces of at most this many padded tokens (0: no cap; "
                             "default: tune's own, 2048 on CPU)")
    parser.add_argument("--skip-trl", action="store_true", help="time ours only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return
    if not args.skip_trl:
        import importlib.util

        if importlib.util.find_spec("trl") is None:
            raise SystemExit('benchmarks/tune.py compares against TRL: pip install "trl>=1.0" (or pass --skip-trl)')

    load_at_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_model(work / "model")
        examples = build_examples(args.texts)
        data = work / "examples.json"
        data.write_text(json.dumps(examples))
        print(f"{args.texts} texts, GPT-2 {MODEL_SHAPE['n_layer']}x{MODEL_SHAPE['n_embd']}, vocab {VOCAB_SIZE}, "
              f"batch {args.batch_size}, {args.threads} thread(s)", flush=True)
        check = None if args.skip_trl else run_worker("check", work / "model", data, work, args)
        if check:
            print(f"loss check (all weights 1): {json.dumps(check)}", flush=True)
        names = ["ours"] + ([] if args.skip_trl else ["trl", "trl_grouped"])
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(args.repeats):  # interleaved, so that a noisy neighbour hurts every variant alike
            for name in names:
                run = run_worker(name, work / "model", data, work, args)
                run["cpu_tok_s"] = round(run["tokens"] / run["cpu_seconds"], 1)
                runs[name].append(run)
                print(f"{name:12s} {run['tok_s']:>7,.0f} tok/s wall  {run['cpu_tok_s']:>7,.0f} tok/s of CPU time  "
                      f"{run['tokens']:,} tokens in {run['seconds']:.1f} s  peak {run['peak_mb']:,.0f} MB", flush=True)
    # Best of the repeats: noise from other processes only ever slows a run down.
    results = {name: max(found, key=lambda r: r["tok_s"]) for name, found in runs.items()}
    cpu_best = {name: max(r["cpu_tok_s"] for r in found) for name, found in runs.items()}

    ours = results["ours"]
    peak = peak_flops(args.threads)
    flops = training_flops(ours["tokens"], ours["learned_tokens"], ours["tokens"] / args.texts)
    # One thread: per second of CPU time, which other jobs on the machine do not stretch. Several threads: per
    # wall-clock second, against the peak of that many threads.
    seconds = ours["tokens"] / cpu_best["ours"] if args.threads == 1 else ours["seconds"]
    mfu = flops / seconds / peak
    print(f"ours: {flops / seconds / 1e9:.1f} GFLOP/s of model compute; fp32 matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s on {args.threads} thread(s): MFU {mfu:.1%}; pad efficiency {ours['pad_efficiency']:.1%}")

    def ratio(numerator, denominator):
        return round(numerator / denominator, 3) if numerator and denominator else None

    trl, grouped = results.get("trl", {}), results.get("trl_grouped", {})
    summary = {
        "ours_tok_s": ours["tok_s"],
        "trl_tok_s": trl.get("tok_s"),
        "trl_grouped_tok_s": grouped.get("tok_s"),
        "ratio": ratio(ours["tok_s"], trl.get("tok_s")),
        "ratio_grouped": ratio(ours["tok_s"], grouped.get("tok_s")),
        "ours_peak_mb": ours["peak_mb"],
        "trl_peak_mb": trl.get("peak_mb"),
        "trl_grouped_peak_mb": grouped.get("peak_mb"),
        "pad_efficiency": ours["pad_efficiency"],
        "ours_cpu_tok_s": cpu_best["ours"],
        "trl_cpu_tok_s": cpu_best.get("trl"),
        "trl_grouped_cpu_tok_s": cpu_best.get("trl_grouped"),
        "ratio_cpu": ratio(cpu_best["ours"], cpu_best.get("trl")),
        "ratio_grouped_cpu": ratio(cpu_best["ours"], cpu_best.get("trl_grouped")),
        "ours_mfu": round(mfu, 4),
        "peak_gflops": round(peak / 1e9, 1),
        "threads": args.threads,
        "texts": args.texts,
        "tokens": ours["tokens"],
        "repeats": args.repeats,
        "load_average_at_start": load_at_start,
        "losses_agree": bool(check["token_means_agree"] and check["sequence_means_agree"]) if check else None,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
