"""Generate a batch of texts into the store: prompts x samples, with the round's model."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

from .config import GenerateSection
from .prompts import Prompt
from .store import Store


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    round: int
    model: str
    items: int


def item_id(batch_id: str, prompt_id: str, sample_index: int) -> str:
    return "i" + hashlib.sha256(f"{batch_id}\x1f{prompt_id}\x1f{sample_index}".encode()).hexdigest()[:15]


def generate_batch(
    store: Store,
    prompts: Sequence[Prompt],
    settings: GenerateSection,
    model: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> BatchResult:
    """Sample `settings.samples_per_prompt` texts per prompt and store them as one batch."""
    from .generation import generate_samples
    from .models import load_model_and_tokenizer, model_name_for_record

    round_ = store.current_round()
    model = model or store.round_model(round_)
    lm, tokenizer = load_model_and_tokenizer(model)
    samples = generate_samples(
        lm,
        tokenizer,
        [p.text for p in prompts],
        n=settings.samples_per_prompt,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed,
        batch_size=settings.batch_size,
        temperature=settings.temperature,
        top_p=settings.top_p,
        progress=progress,
    )
    batch_id = f"r{round_}-{uuid.uuid4().hex[:10]}"
    recorded_model = model_name_for_record(model)
    items = [
        {
            "id": item_id(batch_id, prompts[s.prompt_index].id, s.sample_index),
            "prompt_id": prompts[s.prompt_index].id,
            "prompt": s.prompt,
            "text": s.text,
            "model": recorded_model,
            "sample_index": s.sample_index,
        }
        for s in samples
    ]
    params = {
        "samples_per_prompt": settings.samples_per_prompt,
        "max_new_tokens": settings.max_new_tokens,
        "seed": settings.seed,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "prompts": len(prompts),
    }
    store.add_batch(batch_id, round_, recorded_model, params, items)
    return BatchResult(batch_id=batch_id, round=round_, model=recorded_model, items=len(items))
