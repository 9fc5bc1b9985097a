"""Weighted fine-tuning of a causal language model on crowd-rated generations.

The objective is ``alpha * L_ref + beta * mean_i(w_i * L_i)``: L_ref is the mean loss on optional supervised
reference examples, w_i the weight of rated generation i (see weighting.py) and L_i its mean cross-entropy
over its own completion tokens (prompt tokens are never learned), so long texts do not outweigh short ones.
Each optimizer step estimates that objective on the step's sequences across all devices and accumulation
micro-batches, exactly: the step plan is known to every process in advance (see tune_data.py).

The loop runs on accelerate, so one code path serves CPU, one GPU, and DDP/FSDP over several GPUs or nodes:

    python -m mturk_tune.tuning --spec spec.json                                  # one process
    torchrun --nproc_per_node 4 -m mturk_tune.tuning --spec spec.json             # DDP, 4 processes
    accelerate launch --num_processes 8 -m mturk_tune.tuning --spec spec.json     # or FSDP via accelerate config

`write_spec` writes the spec file and `launch_command` builds such a command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mturk_tune.errors import ConfigError, InputFileError, MturkTuneError
from mturk_tune.tune_data import (
    FeedbackExample,
    ReferenceExample,
    TokenizedSet,
    plan_epoch,
    rank_share,
    read_reference,
    step_coefficients,
    tokenize_examples,
)
from mturk_tune.tune_card import CARD_FILE, RECORD_FILE, json_default, model_card, run_record
from mturk_tune.weighting import SCHEMES, compute_weights

__all__ = [
    "SCHEMES", "TuneConfig", "TuneResult", "FeedbackExample", "ReferenceExample", "read_reference", "tune",
    "write_spec", "run_spec", "launch_command",
]

LR_SCHEDULES = ("linear", "cosine", "constant")
OPTIMIZERS = ("adamw", "sgd")
STATE_DIR = "training_state"
CPU_MICRO_BATCH_TOKENS = 2048
# Config fields that may change between a killed run and its resume without changing the result.
_RESUMABLE_CHANGES = {"threads", "save_every", "compile", "eval_prompts", "sample_max_new_tokens", "micro_batch_tokens",
                      "gradient_checkpointing"}


@dataclass
class TuneConfig:
    """Every knob of a tuning run; all of it goes into the run record."""

    alpha: float = 1.0  # weight of the supervised reference loss (used only with reference data)
    beta: float = 1.0  # weight of the feedback loss on rated generations
    scheme: str = "normalized"  # how scores become weights: one of SCHEMES (see weighting.py)
    temperature: float = 1.0  # exponential scheme: score units per factor e
    top_fraction: float = 0.5  # top_fraction scheme: share of best-scored items kept
    confidence_scaling: bool = False  # multiply every weight by the item's aggregation confidence
    score_range: tuple[float, float] | None = None  # normalized scheme: scale bounds, e.g. (1, 5); None = observed
    learning_rate: float = 5e-5
    epochs: int = 1
    batch_size: int = 8  # sequences per device per micro-batch
    micro_batch_tokens: int | str = "auto"  # cap on padded tokens run at once: longer micro-batches run in
    #   pieces (same result, exactly; less activation memory, no recompute). 0: no cap; "auto": 2048 on CPU
    #   (measured as fast as no cap, with a third less memory), no cap on a GPU
    grad_accum: int = 1  # micro-batches per optimizer step
    max_length: int = 512  # tokens per sequence (prompt + completion), longer ones are cut
    seed: int = 0
    warmup: float = 0.0  # share of optimizer steps over which the learning rate rises from 0
    weight_decay: float = 0.0
    lr_schedule: str = "linear"  # after warmup: linear or cosine decay to 0, or constant
    optimizer: str = "adamw"  # adamw, or sgd (plain, no momentum: weights then scale the update exactly)
    max_grad_norm: float = 1.0  # gradient clipping; 0 turns it off
    dropout: float | None = None  # override every dropout probability of the model; None keeps the model's
    lora_r: int = 0  # LoRA rank; 0 trains all weights
    lora_alpha: int | None = None  # LoRA scaling numerator; None = 2 * lora_r
    lora_merge: bool = True  # save LoRA merged into full weights (True) or as a peft adapter (False)
    bf16: bool | str = "auto"  # "auto": bf16 autocast on a GPU that supports it, fp32 elsewhere
    compile: bool = False  # torch.compile the model (helps on GPU with long runs; first steps are slow)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    save_every: int = 200  # save a resumable training state every this many steps; 0 = never
    eval_fraction: float = 0.1  # share of rated items held out to evaluate before and after
    eval_prompts: int = 4  # prompts whose generations are sampled before and after
    sample_max_new_tokens: int = 48
    threads: int | None = None  # torch CPU threads per process; None: the cores other jobs leave free (see cpu_threads)

    def __post_init__(self):
        if isinstance(self.score_range, list):
            self.score_range = tuple(self.score_range)
        self.validate()

    @classmethod
    def from_dict(cls, values: dict, where: str = "tune") -> "TuneConfig":
        """Build from a config-file table, raising ConfigError naming an unknown key or a value of the wrong type."""
        if not isinstance(values, dict):
            raise ConfigError(f"[{where}] must be a table of options, got {type(values).__name__}")
        hints = typing.get_type_hints(cls)
        known = [f.name for f in dataclasses.fields(cls)]
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(f"unknown option {where}.{key}; known options: {', '.join(known)}")
            if not _matches(value, hints[key]):
                raise ConfigError(f"{where}.{key} must be {_describe(hints[key])}, got {value!r}")
        return cls(**values)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        if self.score_range is not None:
            values["score_range"] = list(self.score_range)
        return values

    def validate(self) -> None:
        checks = [
            (self.scheme in SCHEMES, "scheme", f"one of {', '.join(SCHEMES)}"),
            (self.alpha >= 0, "alpha", ">= 0"),
            (self.beta >= 0, "beta", ">= 0"),
            (self.alpha > 0 or self.beta > 0, "beta", "> 0 when alpha is 0"),
            (self.temperature > 0, "temperature", "> 0"),
            (0 < self.top_fraction <= 1, "top_fraction", "in (0, 1]"),
            (self.learning_rate > 0, "learning_rate", "> 0"),
            (self.epochs >= 1, "epochs", ">= 1"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.grad_accum >= 1, "grad_accum", ">= 1"),
            (self.micro_batch_tokens == "auto" or (not isinstance(self.micro_batch_tokens, (str, bool))
                                                   and self.micro_batch_tokens >= 0),
             "micro_batch_tokens", '>= 0 (0: no cap) or "auto"'),
            (self.max_length >= 4, "max_length", ">= 4"),
            (0 <= self.warmup < 1, "warmup", "a share of the steps in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"one of {', '.join(LR_SCHEDULES)}"),
            (self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}"),
            (self.max_grad_norm >= 0, "max_grad_norm", ">= 0 (0 turns clipping off)"),
            (self.dropout is None or 0 <= self.dropout < 1, "dropout", "in [0, 1) or unset"),
            (self.lora_r >= 0, "lora_r", ">= 0 (0 turns LoRA off)"),
            (self.lora_alpha is None or self.lora_alpha > 0, "lora_alpha", "> 0 or unset"),
            (self.bf16 in (True, False, "auto"), "bf16", 'true, false or "auto"'),
            (self.save_every >= 0, "save_every", ">= 0"),
            (0 <= self.eval_fraction <= 0.5, "eval_fraction", "in [0, 0.5]"),
            (self.eval_prompts >= 0, "eval_prompts", ">= 0"),
            (self.sample_max_new_tokens >= 1, "sample_max_new_tokens", ">= 1"),
            (self.threads is None or self.threads >= 1, "threads", ">= 1 or unset"),
            (self.score_range is None or (len(self.score_range) == 2 and self.score_range[0] < self.score_range[1]),
             "score_range", "[low, high] with low < high"),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise ConfigError(f"tune.{key} must be {expected}, got {getattr(self, key)!r}")


@dataclass
class TuneResult:
    """Where the tuned model is, and the run record written beside it (complete on the main process)."""

    checkpoint: Path
    record: dict = field(default_factory=dict)


def tune(
    base_model: str,
    feedback: list[FeedbackExample],
    out_dir: Path,
    config: TuneConfig,
    reference: list[ReferenceExample] | None = None,
    provenance: dict | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> TuneResult:
    """Fine-tune `base_model` on rated generations (and optional reference examples) into `out_dir`.

    `out_dir` becomes a checkpoint that `load_model_and_tokenizer(str(out_dir))` loads: the model and tokenizer
    (or a LoRA adapter when lora_merge is off), `run_record.json` and a model card `README.md`. Resumable
    states (model, optimizer, scheduler, RNG, step, config) go to `out_dir/training_state/` every `save_every`
    steps and are removed once the run completes; `resume=True` continues from the latest one to the same final
    weights as an uninterrupted run (and returns a completed run's result as it is). `progress(step, total_steps)` is
    called on the main process after every optimizer step. Under several processes every process calls this
    with the same arguments.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import TorchDynamoPlugin

    out_dir = Path(out_dir)
    reference = list(reference or [])
    provenance = dict(provenance or {})
    _check_out_dir(out_dir, resume)
    if resume and (out_dir / RECORD_FILE).exists() and not (out_dir / STATE_DIR).exists():
        return TuneResult(checkpoint=out_dir, record=json.loads((out_dir / RECORD_FILE).read_text()))
    train_items, eval_items, weights = _split_feedback(feedback, config)

    _forget_accelerator_settings()
    accelerator = Accelerator(
        mixed_precision="bf16" if _use_bf16(config.bf16) else "no",
        step_scheduler_with_optimizer=False,  # we step the scheduler once per optimizer step ourselves
        dynamo_plugin=TorchDynamoPlugin(backend="inductor", dynamic=True) if config.compile else None,
    )
    threads_before = torch.get_num_threads()
    if accelerator.device.type == "cpu":
        torch.set_num_threads(cpu_threads(config.threads, _local_processes(accelerator)))
    try:
        return _train(accelerator, base_model, feedback, out_dir, config, reference, provenance, resume, progress,
                      train_items, eval_items, weights)
    finally:
        torch.set_num_threads(threads_before)


def _train(accelerator, base_model, feedback, out_dir, config, reference, provenance, resume, progress,
           train_items, eval_items, weights) -> TuneResult:
    """The body of `tune` once the accelerator and threads are set."""
    import torch
    from accelerate.utils import DistributedType, gather_object, set_seed

    from mturk_tune.tune_eval import evaluate
    from mturk_tune.tune_loss import WeightedLMLoss, collate

    world_size, rank = accelerator.num_processes, accelerator.process_index
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    if fsdp and config.lora_r:
        raise ConfigError("tune.lora_r with FSDP is not supported: use DDP (plain accelerate launch) for LoRA runs")
    set_seed(config.seed)

    model, tokenizer = _load_model(base_model)
    _prepare_model_for_training(model, config)
    if config.lora_r:
        model = _add_lora(model, config)
    tokenizer_pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    train_weights = np.array([weights[ex.task] for ex in train_items])
    data = tokenize_examples(tokenizer, train_items, train_weights, reference, config.max_length)
    lengths = data.lengths
    global_batch = config.batch_size * config.grad_accum * world_size
    micro_batch = config.batch_size * world_size
    plans = [p for epoch in range(config.epochs) for p in plan_epoch(lengths, global_batch, micro_batch, config.seed, epoch)]
    total_steps = len(plans)
    warmup_steps = math.floor(config.warmup * total_steps)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = _make_optimizer(trainable, config, torch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, config.lr_schedule)
    )
    device = accelerator.device
    model.to(device)
    pad_multiple = 8 if device.type == "cuda" else 1
    chunk_tokens = config.micro_batch_tokens
    if chunk_tokens == "auto":
        chunk_tokens = CPU_MICRO_BATCH_TOKENS if device.type == "cpu" else 0

    fingerprint = _data_fingerprint(data, base_model)
    state = _load_progress(out_dir, config, fingerprint) if resume else None
    eval_before = samples_before = None
    if state is None and accelerator.is_main_process:
        eval_before, samples_before = evaluate(model, tokenizer, eval_items, train_items, config, device, tokenizer_pad)

    loss_module = WeightedLMLoss(model)
    loss_module, optimizer, scheduler = accelerator.prepare(loss_module, optimizer, scheduler)

    start_step, history, seconds_done, cpu_done = 0, [], 0.0, 0.0
    if state is not None:
        accelerator.load_state(str(state["dir"]))
        start_step, history = state["step"], state["history"]
        seconds_done, cpu_done = state["seconds"], state["cpu_seconds"]

    def run_micro_batch(share: np.ndarray, coefficients: list[float], sync: bool):
        """Forward and backward one process's share of a micro-batch, in token-capped chunks; returns its loss."""
        chunks = token_chunks(lengths[share], chunk_tokens)
        total_loss, real_tokens = torch.zeros((), device=device), 0
        for number, (start, stop) in enumerate(chunks):
            batch = collate(data, share[start:stop], coefficients[start:stop], tokenizer_pad, pad_multiple).to(device)
            with accelerator.no_sync(loss_module) if not (sync and number == len(chunks) - 1) else _nothing():
                loss, _ = loss_module(**batch.as_inputs())
                # DDP and FSDP average gradients over processes; the coefficients already divide by the whole
                # step's sequence counts, so undo the average.
                accelerator.backward(loss * world_size)
            total_loss += loss.detach().float()
            real_tokens += batch.real_tokens
        return total_loss, real_tokens

    loss_module.train()
    started, cpu_started = time.perf_counter(), time.process_time()
    paused = paused_cpu = 0.0  # time spent saving states, left out of the throughput
    for step in range(start_step, total_steps):
        plan = plans[step]
        coefficients = step_coefficients(data, plan, config.alpha, config.beta)
        stats = torch.zeros(2, device=device)  # loss, real tokens (float32: MPS has no float64)
        for position, micro in enumerate(plan.micro_batches):
            share = rank_share(micro, rank, world_size)
            sync = position == len(plan.micro_batches) - 1
            if share.size:
                loss, tokens = run_micro_batch(share, [coefficients[i] for i in share.tolist()], sync)
                stats += torch.stack([loss, torch.tensor(float(tokens), device=device)])
            else:  # a short last micro-batch left this process nothing: run one sequence at weight 0 to stay in sync
                run_micro_batch(micro[:1], [0.0], sync)
        if config.max_grad_norm > 0:
            accelerator.clip_grad_norm_(loss_module.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum, tokens = accelerator.reduce(stats, reduction="sum").tolist()
        history.append({
            "step": step + 1, "loss": round(loss_sum, 6), "lr": scheduler.get_last_lr()[0], "tokens": int(tokens),
            "seconds": round(seconds_done + time.perf_counter() - started - paused, 4),
        })
        if accelerator.is_main_process and progress is not None:
            progress(step + 1, total_steps)
        if config.save_every and (step + 1) % config.save_every == 0 and step + 1 < total_steps:
            pause, pause_cpu = time.perf_counter(), time.process_time()
            clock = {"seconds": seconds_done + pause - started - paused,
                     "cpu_seconds": cpu_done + pause_cpu - cpu_started - paused_cpu}
            _save_progress(accelerator, out_dir, step + 1, config, fingerprint, history, clock,
                           eval_before, samples_before)
            paused += time.perf_counter() - pause
            paused_cpu += time.process_time() - pause_cpu
    train_seconds = seconds_done + (time.perf_counter() - started - paused)
    train_cpu_seconds = cpu_done + (time.process_time() - cpu_started - paused_cpu)
    tokens_total = sum(entry["tokens"] for entry in history)

    tuned = accelerator.unwrap_model(loss_module).model
    digests = None if fsdp else gather_object([_weights_digest(tuned)])
    full_state = accelerator.get_state_dict(loss_module) if fsdp else None
    if config.lora_r and config.lora_merge:
        tuned = tuned.merge_and_unload()
    record: dict = {}
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        if full_state is not None:
            tuned.save_pretrained(out_dir, state_dict={k.removeprefix("model."): v for k, v in full_state.items()})
        else:
            tuned.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        eval_model = tuned if not fsdp else _load_model(str(out_dir))[0].to(device)
        eval_after, samples_after = evaluate(eval_model, tokenizer, eval_items, train_items, config, device, tokenizer_pad)
        record = run_record(
            base_model=base_model, config=config, weights=weights, feedback=feedback, train_items=train_items,
            eval_items=eval_items, reference=reference, data=data, plans=plans, world_size=world_size,
            total_steps=total_steps, history=history, tokens=tokens_total, seconds=train_seconds,
            cpu_seconds=train_cpu_seconds,
            eval_before=eval_before, eval_after=eval_after, samples_before=samples_before,
            samples_after=samples_after, provenance=provenance, resumed_from=state["step"] if state else None,
            accelerator=accelerator, digests=digests, checkpoint=out_dir, threads=torch.get_num_threads(),
        )
        (out_dir / RECORD_FILE).write_text(json.dumps(record, indent=2, default=json_default) + "\n")
        (out_dir / CARD_FILE).write_text(model_card(record))
        shutil.rmtree(out_dir / STATE_DIR, ignore_errors=True)  # the run is complete: nothing left to resume
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TuneResult(checkpoint=out_dir, record=record)


def _forget_accelerator_settings() -> None:
    """accelerate keeps one process-wide state that a second Accelerator may not change (mixed precision) or
    silently ignores (compilation): clear it so that each tune() call in a process gets its own settings. The
    process group and device (PartialState) stay as they are."""
    from accelerate.state import AcceleratorState

    reset = getattr(AcceleratorState, "_reset_state", None)
    if callable(reset):
        reset(reset_partial_state=False)


def token_chunks(lengths: np.ndarray, max_tokens: int | None) -> list[tuple[int, int]]:
    """Cut sequences sorted longest first into runs whose padded size (count x longest) stays within max_tokens;
    a sequence longer than max_tokens runs alone."""
    if not max_tokens:
        return [(0, len(lengths))]
    chunks, start = [], 0
    while start < len(lengths):
        stop = start + max(1, int(max_tokens // max(int(lengths[start]), 1)))
        chunks.append((start, min(stop, len(lengths))))
        start = stop
    return chunks


def cpu_threads(requested: int | None, local_processes: int = 1) -> int:
    """Threads for each training process on CPU: `requested` if given; else OMP_NUM_THREADS if set (torchrun
    sets it to 1 per process); else the cores the scheduler lets us use minus those other jobs keep busy (the
    1-minute load average), shared among this machine's processes. An oversubscribed core runs several times
    slower, so guessing low is cheaper than guessing high."""
    import os

    if requested:
        return requested
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(cores, cores - busy) // max(1, local_processes))


def _local_processes(accelerator) -> int:
    import os

    return int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Learning-rate multiplier for optimizer step `step` (0-based): linear warmup, then the schedule."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


# ---------------------------------------------------------------------------------------------------------
# Data preparation


def _split_feedback(feedback: list[FeedbackExample], config: TuneConfig):
    """Weights for every item, then a seeded hold-out for evaluation; zero-weight items are not trained on."""
    if not feedback:
        raise InputFileError("no rated generations to tune on: aggregate scores for at least one item first")
    tasks = [ex.task for ex in feedback]
    if len(set(tasks)) != len(tasks):
        duplicate = next(t for t in tasks if tasks.count(t) > 1)
        raise InputFileError(f"rated generation task {duplicate!r} appears more than once; give every item its own task id")
    table = pd.DataFrame({
        "task": tasks,
        "label": [ex.score for ex in feedback],
        "confidence": [ex.confidence for ex in feedback],
        "n": 1,
    })
    weights = compute_weights(table, config)
    n_eval = int(round(config.eval_fraction * len(feedback)))
    n_eval = n_eval if n_eval >= 2 and len(feedback) - n_eval >= 1 else 0
    order = np.random.default_rng([config.seed, 7]).permutation(len(feedback))
    held_out = set(order[:n_eval].tolist())
    eval_items = [ex for i, ex in enumerate(feedback) if i in held_out]
    train_items = [ex for i, ex in enumerate(feedback) if i not in held_out and weights[ex.task] > 0]
    if not train_items:
        raise InputFileError(
            "every rated generation left for training weighs zero after holding out "
            f"{n_eval} for evaluation; lower tune.eval_fraction or collect more varied ratings"
        )
    return train_items, eval_items, weights


def _load_model(base_model: str):
    from mturk_tune.models import load_model_and_tokenizer

    return load_model_and_tokenizer(base_model, device="cpu")


def _prepare_model_for_training(model, config: TuneConfig) -> None:
    import torch

    if config.dropout is not None:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = config.dropout
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout", "hidden_dropout"):
            if hasattr(model.config, name):
                setattr(model.config, name, config.dropout)
    from mturk_tune.tune_loss import use_fused_activations

    use_fused_activations(model)
    model.config.use_cache = False
    if config.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.x; 4.x has only the old name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _add_lora(model, config: TuneConfig):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError('tune.lora_r needs peft: pip install "peft>=0.12" (or set lora_r = 0)') from None
    from transformers.pytorch_utils import Conv1D

    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha or 2 * config.lora_r, lora_dropout=0.0,
        target_modules="all-linear", task_type="CAUSAL_LM",
        # GPT-2 style Conv1D layers store their weight transposed.
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),
    )
    return get_peft_model(model, lora)


def _make_optimizer(parameters, config: TuneConfig, torch):
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    # Decay matrices only, not biases and norm gains (as in nanoGPT and the transformers Trainer).
    decay = [p for p in parameters if p.dim() >= 2]
    no_decay = [p for p in parameters if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.learning_rate)


def _use_bf16(setting) -> bool:
    import torch

    if setting == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(setting)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints and resume


def _check_out_dir(out_dir: Path, resume: bool) -> None:
    if resume:
        return
    if (out_dir / STATE_DIR).exists() or (out_dir / RECORD_FILE).exists():
        raise ConfigError(
            f"'{out_dir}' already holds a tuning run; resume it (resume=True, --resume) or choose a new output directory"
        )


def _data_fingerprint(data: TokenizedSet, base_model: str) -> str:
    digest = hashlib.sha256(base_model.encode())
    for ids in data.token_ids:
        digest.update(ids.tobytes())
    digest.update(data.prompt_lengths.tobytes())
    digest.update(np.round(data.weights, 12).tobytes())
    return digest.hexdigest()[:16]


def _save_progress(accelerator, out_dir, step, config, fingerprint, history, clock, eval_before, samples_before):
    """A resumable state: accelerate's model/optimizer/scheduler/RNG files plus progress.json; older ones go."""
    state_root = out_dir / STATE_DIR
    target = state_root / f"step-{step:07d}"
    accelerator.save_state(str(target))
    if accelerator.is_main_process:
        progress = {
            "step": step, "config": config.to_dict(), "fingerprint": fingerprint, "history": history,
            **clock, "eval_before": eval_before, "samples_before": samples_before,
        }
        (target / "progress.json").write_text(json.dumps(progress, default=json_default))
        for older in state_root.glob("step-*"):
            if older != target:
                shutil.rmtree(older, ignore_errors=True)
    accelerator.wait_for_everyone()


def _load_progress(out_dir: Path, config: TuneConfig, fingerprint: str) -> dict | None:
    """The latest saved state, checked against this run's config and data; None when there is none."""
    saved = sorted((out_dir / STATE_DIR).glob("step-*/progress.json"))
    if not saved:
        return None
    progress = json.loads(saved[-1].read_text())
    current = config.to_dict()
    for key, value in progress["config"].items():
        if key not in _RESUMABLE_CHANGES and current.get(key) != value:
            raise ConfigError(
                f"cannot resume '{out_dir}': tune.{key} was {value!r} and is now {current.get(key)!r}; "
                "use the same config or start a new output directory"
            )
    if progress["fingerprint"] != fingerprint:
        raise ConfigError(
            f"cannot resume '{out_dir}': the base model or training data changed since the saved state; "
            "use the same data or start a new output directory"
        )
    progress["dir"] = saved[-1].parent
    return progress


def _weights_digest(model) -> str:
    """A short fingerprint of the weights, computed where they live (a per-tensor sum and absolute sum), so that
    the processes of a run can show they hold the same model without copying it anywhere."""
    import torch

    with torch.no_grad():
        sums = [torch.stack([t.float().sum(), t.float().abs().sum()]) for _, t in sorted(model.state_dict().items())]
    digest = hashlib.sha256(torch.stack(sums).double().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------------------
# Config type checks


def _matches(value, hint) -> bool:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_matches(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    return False


def _describe(hint) -> str:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "unset"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) is tuple:
        return f"a list of {len(typing.get_args(hint))} numbers"
    return str(hint)


# ---------------------------------------------------------------------------------------------------------
# Multi-process entry point


def write_spec(
    path: Path,
    base_model: str,
    feedback: list[FeedbackExample],
    out_dir: Path,
    config: TuneConfig,
    reference: list[ReferenceExample] | None = None,
    provenance: dict | None = None,
    resume: bool = False,
) -> Path:
    """Write everything `tune` needs to a JSON file that `python -m mturk_tune.tuning --spec FILE` runs."""
    spec = {
        "base_model": base_model,
        "out_dir": str(out_dir),
        "config": config.to_dict(),
        "feedback": [dataclasses.asdict(ex) for ex in feedback],
        "reference": [dataclasses.asdict(ex) for ex in reference or []],
        "provenance": provenance or {},
        "resume": resume,
    }
    path = Path(path)
    path.write_text(json.dumps(spec, default=json_default))
    return path


def run_spec(path: Path, progress: Callable[[int, int], None] | None = None) -> TuneResult:
    """Run the tuning a spec file describes (every process of a launch calls this)."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(f"tuning spec '{path}' not found; write it with mturk_tune.tuning.write_spec") from None
    except json.JSONDecodeError as error:
        raise InputFileError(f"tuning spec '{path}' is not valid JSON ({error.msg})") from None
    try:
        feedback = [FeedbackExample(**item) for item in spec["feedback"]]
        reference = [ReferenceExample(**item) for item in spec.get("reference", [])]
        config = TuneConfig.from_dict(spec.get("config", {}))
        return tune(
            spec["base_model"], feedback, Path(spec["out_dir"]), config, reference=reference,
            provenance=spec.get("provenance"), resume=bool(spec.get("resume")), progress=progress,
        )
    except (KeyError, TypeError) as error:
        raise InputFileError(f"tuning spec '{path}' is malformed ({error}); write it with write_spec") from None


def launch_command(launcher: str, spec_path: Path) -> list[str]:
    """The argv that runs a spec under a launcher: "python", "torchrun --nproc_per_node 2", "accelerate launch ..."."""
    import shlex

    try:
        words = shlex.split(launcher)
    except ValueError as error:
        raise ConfigError(f"launch command {launcher!r} cannot be split into words ({error}); check its quotes") from None
    if not words:
        raise ConfigError("the launch command is empty: pass e.g. --launch \"accelerate launch --num_processes 2\"")
    return [*words, "-m", "mturk_tune.tuning", "--spec", str(spec_path)]


def _print_progress(step: int, total: int) -> None:
    if step == total or step % max(1, total // 20) == 0:
        print(f"step {step}/{total}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mturk_tune.tuning", description="Run a tuning spec (one process of a launch).")
    parser.add_argument("--spec", required=True, type=Path, help="JSON file written by mturk_tune.tuning.write_spec")
    args = parser.parse_args(argv)
    try:
        result = run_spec(args.spec, progress=_print_progress)
    except MturkTuneError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    if result.record:
        print(json.dumps({"checkpoint": str(result.checkpoint), "steps": result.record["training"]["steps"],
                          "final_loss": result.record["training"]["final_loss"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
