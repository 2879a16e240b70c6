"""Loss masks with the real SmolLM2 tokenizer: the loss is on the assistant's tokens and its <|im_end|>."""

from __future__ import annotations

from typing import Any

import pytest

from tuning.datasets import Sample
from tuning.errors import TuningError
from tuning.tokenization import IGNORE, tokenize_example, tokenize_samples

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome."},
]


def supervised_text(tokenizer: Any, ids: list[int], labels: list[int]) -> list[str]:
    """The supervised runs of tokens, decoded."""
    runs: list[list[int]] = []
    for i, (tok, lab) in enumerate(zip(ids, labels, strict=True)):
        if lab == IGNORE:
            continue
        if not runs or labels[i - 1] == IGNORE:
            runs.append([])
        runs[-1].append(tok)
    return [tokenizer.decode(r) for r in runs]


def test_only_assistant_tokens_and_end_of_turn_are_labelled(tokenizer: Any) -> None:
    ex = tokenize_example(tokenizer, CHAT, max_length=512)
    assert supervised_text(tokenizer, ex.input_ids, ex.labels) == ["Paris.<|im_end|>", "Rome.<|im_end|>"]
    for tok, lab in zip(ex.input_ids, ex.labels, strict=True):
        assert lab in (IGNORE, tok)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    last = max(i for i, lab in enumerate(ex.labels) if lab != IGNORE)
    assert ex.input_ids[last] == im_end and ex.labels[last] == im_end
    system_and_user = tokenizer.decode([t for t, lab in zip(ex.input_ids, ex.labels, strict=True)
                                        if lab == IGNORE])
    assert "Be brief." in system_and_user and "capital of France" in system_and_user


def test_train_on_all_labels_every_token(tokenizer: Any) -> None:
    ex = tokenize_example(tokenizer, CHAT, max_length=512, train_on="all")
    assert ex.labels == ex.input_ids


def test_truncation_and_dropping(tokenizer: Any) -> None:
    long_user = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]
    samples = [Sample(1, CHAT), Sample(2, long_user)]
    examples, report = tokenize_samples(tokenizer, samples, max_length=64)
    assert [e.line for e in examples] == [1]
    assert report.kept == 1 and report.dropped == 1 and report.dropped_lines == [2]
    assert report.truncated == 1 and all(len(e.input_ids) <= 64 for e in examples)


def test_text_samples_train_on_everything_with_eos(tokenizer: Any) -> None:
    (ex,), _ = tokenize_samples(tokenizer, [Sample(1, text="Once upon a time")], max_length=64)
    assert ex.labels == ex.input_ids and ex.input_ids[-1] == tokenizer.eos_token_id


class _Tok:
    """A tokenizer whose template renders a conversation's start unlike the whole conversation."""

    chat_template = "x"
    eos_token_id = 0

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool,
                            add_generation_prompt: bool) -> str:
        return f"{len(messages)}:" + "|".join(m["content"] for m in messages)

    def __call__(self, text: str, add_special_tokens: bool) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}

    def get_vocab(self) -> dict[str, int]:
        return {}


def test_template_without_prefix_property_is_refused() -> None:
    with pytest.raises(TuningError, match="train_on='all'"):
        tokenize_example(_Tok(), CHAT[1:3], max_length=64)


def test_packed_rows_give_each_example_the_loss_it_has_alone(tokenizer: Any, base_model: Any) -> None:
    """Packing is exact: the summed loss of examples laid end to end in rows equals their loss
    padded one to a row (positions restart, no example attends to another)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tuning.batching import collate, collate_packed, pack_rows
    from tuning.native import loss_sum

    talks = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in (("Say hello.", "Hello!"), ("Largest planet?", "Jupiter, by far."),
                          ("Name a colour.", "Blue."), ("Opposite of hot?", "Cold."))]
    examples = [tokenize_example(tokenizer, t, 256) for t in talks]
    width = sum(len(e.input_ids) for e in examples[:3])
    assert len(pack_rows([len(e.input_ids) for e in examples], width)) == 2
    model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=torch.float32).eval()
    pad = int(tokenizer.pad_token_id or 0)
    with torch.no_grad():
        padded = loss_sum(model, collate(examples, pad), fast=True)
        packed = loss_sum(model, collate_packed(examples, pad, width), fast=True)
        slow = loss_sum(model, collate_packed(examples, pad, width), fast=False)
    assert float(packed) == pytest.approx(float(padded), rel=1e-4)
    assert float(slow) == pytest.approx(float(padded), rel=1e-4)
