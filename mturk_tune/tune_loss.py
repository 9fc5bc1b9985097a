"""The weighted sequence loss and the batches it runs on.

A micro-batch's loss is ``sum_i c_i * L_i`` where L_i is sequence i's mean cross-entropy over its own learned
(completion) tokens and c_i is its coefficient for the step (see tune_data.step_coefficients). The collator
turns that into one factor per learned token, ``c_i / n_i``, so the loss is a single dot product.

Speed: only learned positions reach the language-model head. The backbone's hidden states are gathered at
the positions that predict a completion token, and the head and cross-entropy run on those rows alone: no
head compute (often the largest matrix in a small model) on prompt or padding positions, and no logits
tensor of batch x length x vocabulary. Batches are right-padded and run without a padding mask: under a
causal mask a real token never attends to the padding after it, and padding positions are never scored, so
attention can use its fused causal kernels (flash attention on GPU) instead of an explicit mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mturk_tune.tune_data import TokenizedSet

# Config attributes of models whose logits are more than `lm_head(hidden)`: those take the plain path.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


@dataclass
class Batch:
    """One process's micro-batch, ready for WeightedLMLoss."""

    input_ids: torch.Tensor  # (B, T) right-padded
    predict_index: torch.Tensor  # (N,) flat positions b * T + t whose hidden state predicts a learned token
    target_ids: torch.Tensor  # (N,) the learned tokens
    token_coef: torch.Tensor  # (N,) c_i / n_i of the token's sequence
    token_seq: torch.Tensor  # (N,) row of the token's sequence
    real_tokens: int  # non-padding tokens in the batch

    def to(self, device) -> "Batch":
        moved = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()}
        return Batch(**moved)

    def as_inputs(self) -> dict:
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.Tensor)}


def collate(data: TokenizedSet, indices: np.ndarray, coefficients: list[float], pad_id: int, pad_multiple: int = 1) -> Batch:
    """Right-pad the sequences `indices` into one batch whose learned tokens carry `coefficients[i] / n_i`."""
    sequences = [data.token_ids[i] for i in indices]
    lengths = np.array([len(s) for s in sequences])
    width = int(lengths.max())
    width = -(-width // pad_multiple) * pad_multiple
    input_ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    predict, targets, coef, seq = [], [], [], []
    for row, (index, ids) in enumerate(zip(indices, sequences)):
        input_ids[row, : len(ids)] = ids
        # Token t is predicted from position t - 1; a sequence without a prompt cannot predict its first token.
        first = max(int(data.prompt_lengths[index]), 1)
        positions = np.arange(first - 1, len(ids) - 1)
        predict.append(row * width + positions)
        targets.append(ids[first:])
        coef.append(np.full(positions.size, coefficients[row] / max(positions.size, 1)))
        seq.append(np.full(positions.size, row))
    return Batch(
        input_ids=torch.from_numpy(input_ids),
        predict_index=torch.from_numpy(np.concatenate(predict)),
        target_ids=torch.from_numpy(np.concatenate(targets).astype(np.int64)),
        token_coef=torch.from_numpy(np.concatenate(coef).astype(np.float32)),
        token_seq=torch.from_numpy(np.concatenate(seq)),
        real_tokens=int(lengths.sum()),
    )


class WeightedLMLoss(nn.Module):
    """Wraps a causal LM so that forward returns (weighted loss, per-sequence mean losses).

    It is this wrapper that accelerate prepares (DDP/FSDP), so gradient synchronisation sees the whole
    computation even though it calls the backbone and the head separately.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, predict_index, target_ids, token_coef, token_seq):
        token_losses = self.token_losses(input_ids, predict_index, target_ids)
        loss = torch.dot(token_losses, token_coef.to(token_losses.dtype))
        sequence_losses = torch.zeros(input_ids.shape[0], device=token_losses.device, dtype=token_losses.dtype)
        sequence_losses.index_add_(0, token_seq, token_losses.detach())
        counts = torch.bincount(token_seq, minlength=input_ids.shape[0]).clamp_min(1)
        return loss, sequence_losses / counts

    def token_losses(self, input_ids, predict_index, target_ids) -> torch.Tensor:
        hf_model = _hf_model(self.model)
        # All ones on purpose (see the module docstring): with right padding a causal mask alone is exact for
        # every scored position, and an all-ones mask lets attention take its fused causal path.
        attention_mask = torch.ones_like(input_ids)
        if any(getattr(hf_model.config, name, None) for name in _LOGIT_POSTPROCESSING):
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
            selected = logits.flatten(0, 1).index_select(0, predict_index)
        else:
            hidden = hf_model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            selected = hf_model.get_output_embeddings()(hidden.flatten(0, 1).index_select(0, predict_index))
        return F.cross_entropy(selected.float(), target_ids, reduction="none")


def use_fused_activations(model: nn.Module) -> int:
    """Swap GPT-2's tanh-GELU, written as eight tensor operations, for torch's one-kernel version of the same
    function (equal to within float rounding, ~2e-7). It saves time and the memory of the intermediate tensors
    kept for backward (a third of the activation memory of a small GPT-2). The module holds no weights and the
    config is unchanged, so checkpoints are unaffected. Returns how many activations were swapped."""
    from transformers.activations import FastGELUActivation, NewGELUActivation

    try:
        from transformers.activations import GELUTanh
    except ImportError:  # transformers 4.x
        from transformers.activations import PytorchGELUTanh as GELUTanh

    swapped = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) in (NewGELUActivation, FastGELUActivation):
                setattr(parent, name, GELUTanh())
                swapped += 1
    return swapped


def _hf_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (LoRA layers are injected into it in place)."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model
