"""The embedder's token counter counts with a tokenizer of its own: the same counts as the
tokenizer's encode, never cut by the truncation the model's encode leaves switched on."""

from __future__ import annotations

from typing import Any

import pytest

from retrieval.embedder import packaged_model_dir, token_counter


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(packaged_model_dir()))


TEXTS = ["", "Pumps move water uphill.", "&" * 300, "naïve café — 東京 🚰", "pump valve " * 700]


def test_counts_match_the_tokenizers_own(tokenizer: Any) -> None:
    count = token_counter(tokenizer)
    assert [count(t) for t in TEXTS] == \
        [len(tokenizer.encode(t, add_special_tokens=False, verbose=False)) for t in TEXTS]


def test_truncation_left_on_the_shared_tokenizer_does_not_cut_a_count(tokenizer: Any) -> None:
    count = token_counter(tokenizer)
    tokenizer.backend_tokenizer.enable_truncation(max_length=256)  # as an embed in flight leaves it
    try:
        assert count("pump valve " * 700) == 1400
    finally:
        tokenizer.backend_tokenizer.no_truncation()
