"""Training examples for weighted fine-tuning: reading them, tokenizing them, and planning their batches.

Nothing here imports torch: the plan of which sequences go into which optimizer step and micro-batch is plain
numpy, computed identically on every process from the seed, so each process knows the whole step's make-up
(how many reference and feedback sequences it holds across all devices and accumulation micro-batches)
before it runs a single micro-batch. That is what makes the loss exact under accumulation and across devices
without any extra communication.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mturk_tune.errors import InputFileError

REFERENCE = 0  # sequence kind: supervised reference example (alpha term)
FEEDBACK = 1  # sequence kind: rated generation (beta * weight term)

# Steps per length-sorting window. Larger windows pad less but make steps more length-homogeneous;
# 50 batches per window is what transformers' LengthGroupedSampler uses.
SORT_WINDOW_STEPS = 50


@dataclass
class FeedbackExample:
    """One rated generation: the prompt, what the model wrote, and the crowd's aggregated verdict on it."""

    task: str
    prompt: str
    completion: str
    score: float  # aggregated score (e.g. Likert mean)
    confidence: float = 1.0  # aggregation confidence in 0..1


@dataclass
class ReferenceExample:
    """One supervised example. A plain text has an empty prompt: every token after the first is learned."""

    prompt: str
    completion: str


@dataclass
class TokenizedSet:
    """Token ids of every training sequence, with where its completion starts and how much it counts."""

    token_ids: list[np.ndarray]
    prompt_lengths: np.ndarray  # tokens before the completion (never learned)
    kinds: np.ndarray  # REFERENCE or FEEDBACK
    weights: np.ndarray  # per-sequence weight w_i (1 for reference sequences)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.token_ids), dtype=np.int64, count=len(self.token_ids))

    def __len__(self) -> int:
        return len(self.token_ids)


@dataclass
class StepPlan:
    """The sequences of one optimizer step: a list of global micro-batches, each a list of sequence indices.

    A global micro-batch holds up to batch_size * world_size sequences of similar length; process `rank`
    takes every world_size-th of them, starting at `rank`.
    """

    micro_batches: list[np.ndarray]

    def indices(self) -> np.ndarray:
        return np.concatenate(self.micro_batches)


def read_reference(path: str | Path) -> list[ReferenceExample]:
    """Read supervised reference examples from JSONL or CSV.

    Each record has ``prompt`` and ``completion`` fields, or a single ``text`` field (learned whole).
    Raises InputFileError naming the file and line when the file is missing, empty or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"reference file '{path}' not found; pass an existing JSONL or CSV file")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            records = [(line_no, row) for line_no, row in enumerate(csv.DictReader(handle), start=2)]
    else:
        records = []
        with path.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append((line_no, json.loads(line)))
                except json.JSONDecodeError as error:
                    raise InputFileError(f"{path}:{line_no}: not valid JSON ({error.msg}); write one JSON object per line") from None
    examples = [_reference_from_record(record, f"{path}:{line_no}") for line_no, record in records]
    if not examples:
        raise InputFileError(f"reference file '{path}' holds no examples; add prompt/completion or text records")
    return examples


def _reference_from_record(record, where: str) -> ReferenceExample:
    if not isinstance(record, dict):
        raise InputFileError(f"{where}: expected an object with prompt/completion or text fields")
    if record.get("completion") not in (None, ""):
        prompt = record.get("prompt") or ""
        if not isinstance(prompt, str) or not isinstance(record["completion"], str):
            raise InputFileError(f"{where}: prompt and completion must be strings")
        return ReferenceExample(prompt=prompt, completion=record["completion"])
    if isinstance(record.get("text"), str) and record["text"].strip():
        return ReferenceExample(prompt="", completion=record["text"])
    raise InputFileError(f"{where}: needs a non-empty 'completion' (with optional 'prompt') or a 'text' field")


def tokenize_examples(
    tokenizer,
    feedback: list[FeedbackExample],
    feedback_weights: np.ndarray,
    reference: list[ReferenceExample],
    max_length: int,
) -> TokenizedSet:
    """Tokenize prompt and completion separately (as generation sees them) and join them, EOS appended.

    Prompts get the tokenizer's special tokens (a BOS where the model expects one); the completion ends with
    EOS so the model also learns where to stop. Too-long sequences keep their prompt's end and their
    completion's start, see `_fit`.
    """
    pairs = [(ex.prompt, ex.completion) for ex in feedback] + [(ex.prompt, ex.completion) for ex in reference]
    # Stored completions are stripped, but the model wrote them after a space (GPT-2's "ĠWe", not "We"):
    # tokenizing prompt and completion as one text puts the word boundary back where generation had it.
    joined = [p + _separator(p, c) + c for p, c in pairs]
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=True)["input_ids"] if pairs else []
    whole = tokenizer(joined, add_special_tokens=True)["input_ids"] if pairs else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    token_ids, prompt_lengths = [], []
    for (prompt, completion), prompt_ids, whole_ids in zip(pairs, prompts, whole):
        prompt_ids, whole_ids = list(prompt_ids), list(whole_ids)
        if whole_ids[: len(prompt_ids)] == prompt_ids:
            completion_ids = whole_ids[len(prompt_ids):]
        else:  # the boundary merged into one token: fall back to tokenizing the parts apart
            completion_ids = tokenizer(_separator(prompt, completion) + completion, add_special_tokens=False)["input_ids"]
        prompt_ids, completion_ids = _fit(prompt_ids, list(completion_ids) + eos, max_length)
        token_ids.append(np.asarray(prompt_ids + completion_ids, dtype=np.int64))
        prompt_lengths.append(len(prompt_ids))
    kinds = np.array([FEEDBACK] * len(feedback) + [REFERENCE] * len(reference), dtype=np.int64)
    weights = np.concatenate([np.asarray(feedback_weights, dtype=np.float64), np.ones(len(reference))])
    return TokenizedSet(token_ids, np.asarray(prompt_lengths, dtype=np.int64), kinds, weights)


def _separator(prompt: str, completion: str) -> str:
    """The space generation put between a prompt and its (stripped) completion."""
    if not prompt or not completion or prompt[-1].isspace() or completion[0].isspace():
        return ""
    return " "


def _fit(prompt: list[int], completion: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Cut a prompt + completion to max_length tokens, keeping at least half the budget for the completion."""
    if len(prompt) + len(completion) <= max_length:
        return prompt, completion
    completion = completion[: max(max_length - len(prompt), min(len(completion), max_length // 2))]
    prompt = prompt[len(prompt) - (max_length - len(completion)) :] if max_length > len(completion) else []
    return prompt, completion


def learned_tokens(data: TokenizedSet) -> np.ndarray:
    """Tokens each sequence learns: its completion, or all but the first token when there is no prompt."""
    return data.lengths - np.maximum(data.prompt_lengths, 1)


def plan_epoch(lengths: np.ndarray, global_batch: int, micro_batch: int, seed: int, epoch: int) -> list[StepPlan]:
    """Group the sequences of one epoch into optimizer steps of `global_batch` and micro-batches of `micro_batch`.

    `global_batch` = batch_size * grad_accum * world_size and `micro_batch` = batch_size * world_size.
    A random permutation is cut into windows of SORT_WINDOW_STEPS steps; each window is sorted by length and
    cut into steps, and the steps are shuffled. Steps are thus random samples of similar length (little
    padding), and their order is random. A step depends only on global_batch, so batch 4 x accumulation 4 and
    batch 16 x accumulation 1 (or batch 8 on two devices) see exactly the same steps.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(lengths.size)
    steps_per_epoch = math.ceil(lengths.size / global_batch)
    # At least four windows per epoch where the data allows, so that sorting does not remove all randomness.
    window = global_batch * max(1, min(SORT_WINDOW_STEPS, steps_per_epoch // 4))
    steps: list[np.ndarray] = []
    for start in range(0, order.size, window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        steps.extend(chunk[i : i + global_batch] for i in range(0, chunk.size, global_batch))
    steps = [steps[i] for i in rng.permutation(len(steps))]
    plans = []
    for step in steps:
        step = step[np.argsort(-lengths[step], kind="stable")]
        plans.append(StepPlan([step[i : i + micro_batch] for i in range(0, step.size, micro_batch)]))
    return plans


def step_coefficients(data: TokenizedSet, plan: StepPlan, alpha: float, beta: float) -> dict[int, float]:
    """Each sequence's factor in this step's loss: alpha / n_reference or beta * w_i / n_feedback.

    The step loss is ``alpha * mean_ref(L_j) + beta * mean_fb(w_i * L_i)`` over all sequences of the step on
    all devices, where L is a sequence's mean loss over its own learned tokens.
    """
    indices = plan.indices()
    kinds = data.kinds[indices]
    n_reference = int(np.sum(kinds == REFERENCE))
    n_feedback = int(np.sum(kinds == FEEDBACK))
    coefficients = {}
    for index, kind in zip(indices.tolist(), kinds.tolist()):
        if kind == REFERENCE:
            coefficients[index] = alpha / n_reference
        else:
            coefficients[index] = beta * float(data.weights[index]) / n_feedback
    return coefficients


def rank_share(micro_batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """The sequences one process runs from a global micro-batch (may be empty on a short last batch)."""
    return micro_batch[rank::world_size]


def pad_efficiency(lengths: np.ndarray, plans: list[StepPlan], world_size: int) -> float:
    """Share of the computed token positions that are real tokens rather than padding."""
    real = padded = 0
    for plan in plans:
        for micro in plan.micro_batches:
            for rank in range(world_size):
                share = lengths[rank_share(micro, rank, world_size)]
                if share.size:
                    real += int(share.sum())
                    padded += int(share.max()) * share.size
    return real / padded if padded else 1.0
