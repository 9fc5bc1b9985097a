"""Training sequences tokenize the way generation wrote them."""

import numpy as np
from transformers import AutoTokenizer

from mturk_tune.generation import generate_samples
from mturk_tune.models import load_model_and_tokenizer
from mturk_tune.tune_data import FeedbackExample, tokenize_examples


def test_a_stripped_completion_gets_back_its_word_boundary(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    example = FeedbackExample(task="t", prompt="Write a short review of a hotel.", completion="We stayed at the hotel.",
                              score=5.0)
    data = tokenize_examples(tokenizer, [example], np.ones(1), [], max_length=64)
    completion_ids = list(data.token_ids[0][data.prompt_lengths[0]:-1])  # without the appended EOS
    assert completion_ids == tokenizer(" We stayed at the hotel.", add_special_tokens=False)["input_ids"]
    assert completion_ids != tokenizer("We stayed at the hotel.", add_special_tokens=False)["input_ids"]


def test_training_tokens_match_what_the_model_generated(tiny_model_dir):
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    sample = generate_samples(model, tokenizer, ["Write a short review of a park."], n=1, max_new_tokens=12,
                              temperature=0)[0]
    data = tokenize_examples(tokenizer, [FeedbackExample("t", sample.prompt, sample.text, 5.0)], np.ones(1), [], 64)
    prompt_ids = tokenizer(sample.prompt)["input_ids"]
    greedy = model.generate(
        **tokenizer(sample.prompt, return_tensors="pt"), max_new_tokens=len(data.token_ids[0]) - len(prompt_ids) - 1,
        do_sample=False, pad_token_id=tokenizer.pad_token_id,
    )[0].tolist()
    learned = data.token_ids[0].tolist()[:-1]
    assert learned == greedy[: len(learned)]
