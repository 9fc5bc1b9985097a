"""Evaluation before and after tuning: held-out loss on high- and low-rated items, and greedy samples.

Tuning on rated generations should make the model fit the high-rated held-out items better than the
low-rated ones, so the gap (low-rated loss minus high-rated loss) should widen; the samples show the change
in what the model writes for the same prompts.
"""

from __future__ import annotations

import numpy as np
import torch

from mturk_tune.tune_data import FeedbackExample, tokenize_examples
from mturk_tune.tune_loss import WeightedLMLoss, collate


def evaluate(model, tokenizer, eval_items: list[FeedbackExample], train_items: list[FeedbackExample], config, device,
             pad_id: int) -> tuple[dict | None, list[dict]]:
    """Held-out loss on high- and low-rated items, and greedy samples for a few prompts (RNG left untouched)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        losses = _held_out_losses(model, tokenizer, eval_items, config, device, pad_id)
        prompts = _sample_prompts(eval_items, train_items, config.eval_prompts)
        samples = generate_samples(model, tokenizer, prompts, config.sample_max_new_tokens, device)
    return losses, samples


def _held_out_losses(model, tokenizer, eval_items, config, device, pad_id) -> dict | None:
    if len(eval_items) < 2:
        return None
    ranked = sorted(eval_items, key=lambda ex: (ex.score, ex.task))
    groups = {"low": ranked[: len(ranked) // 2], "high": ranked[len(ranked) // 2 :]}
    scorer = WeightedLMLoss(model)
    was_training = model.training
    model.eval()
    result = {}
    with torch.no_grad():
        for name, items in groups.items():
            data = tokenize_examples(tokenizer, items, np.ones(len(items)), [], config.max_length)
            order = np.argsort(-data.lengths, kind="stable")
            sequence_losses = []
            for start in range(0, order.size, config.batch_size):
                share = order[start : start + config.batch_size]
                batch = collate(data, share, [1.0] * share.size, pad_id).to(device)
                sequence_losses.append(scorer(**batch.as_inputs())[1].float().cpu())
            result[name] = {
                "items": len(items),
                "mean_score": float(np.mean([ex.score for ex in items])),
                "loss": float(torch.cat(sequence_losses).mean()),
            }
    result["gap"] = result["low"]["loss"] - result["high"]["loss"]
    model.train(was_training)
    return result


def _sample_prompts(eval_items, train_items, count: int) -> list[str]:
    prompts: list[str] = []
    for ex in list(eval_items) + list(train_items):
        if len(prompts) >= count:
            break
        if ex.prompt not in prompts:
            prompts.append(ex.prompt)
    return prompts


def generate_samples(model, tokenizer, prompts: list[str], max_new_tokens: int, device) -> list[dict]:
    """Greedy continuations of `prompts` (left-padded, as padding_side is not saved with the tokenizer)."""
    if not prompts:
        return []
    was_training = model.training
    model.eval()
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id, use_cache=True,
        )
    model.train(was_training)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [{"prompt": p, "completion": t} for p, t in zip(prompts, texts)]
