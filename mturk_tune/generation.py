"""Batched sampling of completions from a causal language model.

Prompts are sorted by token length and cut into batches, so that rows in a batch need little left padding.
Each batch runs a short decoding loop of its own (KV cache, logits of the last position only, top-p sampling,
stop when every row has produced EOS) instead of `model.generate`, whose per-step overhead dominates with small
models on CPU (see benchmarks/generation.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mturk_tune.errors import MturkTuneError


@dataclass(frozen=True)
class Sample:
    """One completion of one prompt. `text` is the completion only, without the prompt."""

    prompt_index: int
    sample_index: int
    prompt: str
    text: str
    n_tokens: int  # generated tokens before EOS


def generate_samples(
    model,
    tokenizer,
    prompts: list[str],
    n: int = 1,
    max_new_tokens: int = 40,
    seed: int = 0,
    batch_size: int = 64,
    temperature: float = 1.0,
    top_p: float = 0.95,
    progress: Callable[[int], None] | None = None,
) -> list[Sample]:
    """Sample `n` completions of each prompt, in (prompt_index, sample_index) order.

    Runs on the model's device. `temperature=0` decodes greedily. The same arguments give the same samples
    (the random stream depends on `seed` and on how prompts fall into batches, so also on `batch_size`).
    `progress(k)` is called after each batch with `k`, the number of samples that batch finished.
    """
    _check_arguments(prompts, n, max_new_tokens, batch_size, temperature, top_p)
    device = next(model.parameters()).device
    eos_ids = _eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else min(eos_ids)
    prompt_ids = _encode_prompts(tokenizer, prompts, start_id, _max_prompt_tokens(model, max_new_tokens))

    # Longest prompts first: the first batch is the slowest, so a progress bar's estimate errs on the safe side.
    jobs = sorted(
        ((p, s) for p in range(len(prompts)) for s in range(n)),
        key=lambda job: (-len(prompt_ids[job[0]]), job[0], job[1]),
    )
    generator = torch.Generator(device=device).manual_seed(seed)
    completions: dict[tuple[int, int], list[int]] = {}
    for first in range(0, len(jobs), batch_size):
        batch = jobs[first : first + batch_size]
        input_ids, attention_mask = left_pad([prompt_ids[p] for p, _ in batch], pad_id, device)
        rows = decode_batch(
            model, input_ids, attention_mask, max_new_tokens, eos_ids, pad_id, temperature, top_p, generator
        )
        completions.update(zip(batch, rows))
        if progress is not None:
            progress(len(batch))

    return [
        Sample(
            prompt_index=p,
            sample_index=s,
            prompt=prompts[p],
            text=tokenizer.decode(completions[p, s], skip_special_tokens=True).strip(),
            n_tokens=len(completions[p, s]),
        )
        for p in range(len(prompts))
        for s in range(n)
    ]


def left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows padded on the left to one length, and the attention mask marking real tokens.

    Left padding puts every row's last prompt token in the last column, where decoding continues.
    """
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row) :] = 1
    return input_ids.to(device), attention_mask.to(device)


@torch.inference_mode()
def decode_batch(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_ids: list[int],
    pad_id: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Generated token ids of each left-padded row, up to (not including) its first EOS.

    Rows that have produced EOS are dropped from the batch (and from the KV cache) once an eighth of the
    rows still being computed are done, so the tail of a batch does not pay for finished rows.
    """
    batch = input_ids.shape[0]
    device = input_ids.device
    eos = torch.tensor(eos_ids, device=device)
    forward_options = _forward_options(model)
    cache_argument = _cache_argument(model)
    # With left padding, a row's positions count its real tokens only, so padding does not shift them.
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True,
                **forward_options)
    cache = _cache_of(out)
    can_drop_rows = hasattr(cache, "batch_select_indices")
    logits = out.logits[:, -1, :]
    next_position = positions[:, -1:] + 1
    generated = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)  # the original row of each row still computed
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        token = sample_next_token(logits, temperature, top_p, generator)
        # Tokens after a row's EOS are written too (until the row is dropped) and cut off below.
        generated[rows, step] = token
        done |= (token == eos_ids[0]) if len(eos_ids) == 1 else torch.isin(token, eos)
        n_done = int(done.sum())
        if step == max_new_tokens - 1 or n_done == len(rows):
            break
        if can_drop_rows and n_done * 8 >= len(rows):
            keep = (~done).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, token, next_position = rows[keep], token[keep], next_position[keep]
            attention_mask = attention_mask[keep]
            done = done[keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(rows), 1))], dim=1)
        out = model(input_ids=token[:, None], attention_mask=attention_mask, position_ids=next_position,
                    use_cache=True, **{cache_argument: cache}, **forward_options)
        cache = _cache_of(out)
        logits = out.logits[:, -1, :]
        next_position = next_position + 1

    eos_set = set(eos_ids)
    completions = []
    for row in generated.tolist():
        end = next((i for i, token in enumerate(row) if token in eos_set), len(row))
        completions.append(row[:end])
    return completions


def sample_next_token(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One token per row from last-position logits: greedy at temperature 0, else nucleus (top-p) sampling.

    The nucleus (the smallest set of most likely tokens whose mass reaches top_p) is looked for among each
    row's 16 most likely tokens, then 256 for rows whose nucleus is larger, and only then in the whole sorted
    vocabulary. Each finds the same set as a full sort, but sorting the whole vocabulary of every row costs
    more than a step of a small model.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    if top_p >= 1.0:
        return _draw(logits.softmax(dim=-1), generator)
    vocab = logits.shape[-1]
    log_total = logits.logsumexp(dim=-1, keepdim=True)
    tokens = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    pending = None  # rows whose nucleus is not found yet; None means all rows
    for k in (16, 256, vocab):
        k = min(k, vocab)
        row_logits, row_total = (logits, log_total) if pending is None else (logits[pending], log_total[pending])
        top_logits, top_ids = row_logits.topk(k, dim=-1)
        top_probs = (top_logits - row_total).exp()
        drawn = _draw_from_nucleus(top_probs, top_ids, top_p, generator)
        if pending is None:
            tokens = drawn
        else:
            tokens[pending] = drawn
        if k == vocab:
            break
        short = top_probs.sum(dim=-1) < top_p
        if not bool(short.any()):
            break
        pending = short.nonzero().squeeze(1) if pending is None else pending[short]
    return tokens


def _draw_from_nucleus(sorted_probs, sorted_ids, top_p: float, generator) -> torch.Tensor:
    """Draw from tokens sorted by falling probability, keeping those before the mass reaches top_p."""
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    kept = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    choice = _draw(kept, generator)
    return sorted_ids.gather(-1, choice[:, None]).squeeze(-1)


def _draw(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Index i of each row with probability weights[i] / sum(weights), by an exponential race.

    argmax(w / E) with E ~ Exp(1) is a categorical draw (like torch.multinomial, several times faster on CPU).
    """
    noise = torch.empty_like(weights).exponential_(generator=generator).clamp_(min=1e-20)
    return (weights / noise).argmax(dim=-1)


def _check_arguments(prompts, n, max_new_tokens, batch_size, temperature, top_p) -> None:
    if isinstance(prompts, str):
        raise MturkTuneError("prompts must be a list of strings, not one string: wrap it in a list")
    if len(prompts) == 0:
        raise MturkTuneError("no prompts to generate from: give at least one prompt")
    bad = [i for i, prompt in enumerate(prompts) if not isinstance(prompt, str)]
    if bad:
        raise MturkTuneError(f"prompt {bad[0]} is {type(prompts[bad[0]]).__name__}, not a string: give text prompts")
    if n < 1:
        raise MturkTuneError(f"n (samples per prompt) is {n}: use 1 or more")
    if max_new_tokens < 1:
        raise MturkTuneError(f"max_new_tokens is {max_new_tokens}: use 1 or more")
    if batch_size < 1:
        raise MturkTuneError(f"batch_size is {batch_size}: use 1 or more")
    if temperature < 0:
        raise MturkTuneError(f"temperature is {temperature}: use 0 (greedy) or more")
    if not 0 < top_p <= 1:
        raise MturkTuneError(f"top_p is {top_p}: use a value in (0, 1]")


def _eos_token_ids(model, tokenizer) -> list[int]:
    """Every token that ends a completion: the tokenizer's EOS and any the model's generation config adds."""
    ids = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, configured):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(value)
    if not ids:
        raise MturkTuneError("the tokenizer has no EOS token: use a model whose tokenizer defines eos_token")
    return sorted(ids)


def _max_prompt_tokens(model, max_new_tokens: int) -> int | None:
    """Longest prompt that still leaves room for max_new_tokens in the model's context (None: no limit known)."""
    config = model.config
    limit = next(
        (getattr(config, key) for key in ("n_positions", "max_position_embeddings") if getattr(config, key, None)),
        None,
    )
    if limit is None:
        return None
    if max_new_tokens >= limit:
        raise MturkTuneError(
            f"max_new_tokens is {max_new_tokens} but the model reads at most {limit} tokens: use fewer new tokens"
        )
    return limit - max_new_tokens


def _encode_prompts(tokenizer, prompts: list[str], start_id: int, max_tokens: int | None) -> list[list[int]]:
    encoded = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    rows = []
    for ids in encoded:
        if not ids:
            ids = [start_id]  # an empty prompt still needs one token to condition on
        if max_tokens is not None and len(ids) > max_tokens:
            ids = ids[-max_tokens:]  # keep the end of a long prompt: it is what the completion continues
        rows.append(list(ids))
    return rows


def _forward_options(model) -> dict:
    """Ask for logits of the last position only when the model supports it (skips the LM head elsewhere)."""
    parameters = inspect.signature(model.forward).parameters
    if "logits_to_keep" in parameters:
        return {"logits_to_keep": 1}
    if "num_logits_to_keep" in parameters:
        return {"num_logits_to_keep": 1}
    return {}


def _cache_argument(model) -> str:
    """transformers 5.x names the KV cache argument `cache`; 4.x calls it `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values
