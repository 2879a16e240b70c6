"""The grounded-QA adapter shipped in generation/packaged: it fits the default generator a fresh
`make run` imports (same weights hash and tokenizer), loads, and answers a SQuAD-style question
with a copied span and its citation, or refuses when the passages do not say."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.adapter_registry import AdapterRegistry, base_weights_hash, tokenizer_fingerprint
from generation.adapters import PACKAGED_ADAPTERS
from generation.generator import HFGenerator
from generation.grounding import REFUSAL
from generation.loading import LoadConfig, load_model
from generation.rag import AskConfig, RagAnswerer
from retrieval.types import Hit
from tests.conftest import ImportedModel

NAME = "grounded-qa"


@pytest.fixture(scope="module")
def shipped() -> Path:
    path = PACKAGED_ADAPTERS / NAME
    if not (path / "ragtune_adapter.json").exists():
        pytest.skip(f"{path} holds no packaged adapter")
    return path


def test_it_fits_the_default_generator(shipped: Path, imported_model: ImportedModel,
                                       tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    registry = AdapterRegistry(tmp_path)
    record = registry.install(shipped)
    assert record is not None and record.name == NAME and record.method == "lora"
    assert record.base_hash == base_weights_hash(imported_model.path)
    tokenizer = AutoTokenizer.from_pretrained(str(imported_model.path))
    assert record.tokenizer_fingerprint == tokenizer_fingerprint(tokenizer)
    assert record.metrics, "the record says how it was trained and measured"
    assert registry.install(shipped) is None  # already there: left alone


def test_it_copies_the_span_and_cites_it(shipped: Path, imported_model: ImportedModel) -> None:
    gen = HFGenerator(load_model(str(imported_model.path),
                                 LoadConfig(quantization="fp32", device="cpu")))
    gen.add_adapter(NAME, shipped)
    hits = [Hit(chunk_id=1, doc_id="a", source="harbour.md", page=None, score=0.8, metadata={},
                text="The Quell harbour opened in 1847. Its lighthouse is 31 metres tall."),
            Hit(chunk_id=2, doc_id="b", source="trams.md", page=None, score=0.7, metadata={},
                text="Trams run every 12 minutes on weekdays.")]
    config = AskConfig(adapter=NAME, span_decoding=True, max_new_tokens=24, focus_sentences=0)
    answer = RagAnswerer(lambda: gen).answer("How tall is the Quell lighthouse?", hits, config)
    assert not answer.refused and "31 metres" in answer.answer, answer.answer
    assert [c.source for c in answer.citations] == ["harbour.md"] and answer.grounded
    missing = RagAnswerer(lambda: gen).answer("Who designed the Quell lighthouse?", hits, config)
    assert missing.refused and missing.answer == REFUSAL, missing.answer


def test_every_packaged_folder_is_a_generator_adapter_models_prepare_can_install(tmp_path: Path) -> None:
    """`ragtune models prepare` installs every folder of generation/packaged; anything else there (the
    answer verifier once was) stops it before the default adapter is activated."""
    registry = AdapterRegistry(tmp_path / "adapters")
    folders = sorted(p for p in PACKAGED_ADAPTERS.iterdir() if p.is_dir())
    assert folders
    for folder in folders:
        assert registry.install(folder) is not None, folder


def test_its_keep_set_is_in_the_serving_layout_and_every_answer_is_copied(shipped: Path) -> None:
    """The keep set mixed into tunes stacked on the adapter (tuning/service.py) must be what `ask`
    shows the model today: the serving system prompt (rebuild it with `python -m bench.keep_set`
    when the prompt changes) and answers copied from the passage they cite."""
    import json
    import re

    from generation.grounding import SYSTEM

    rows = [json.loads(line) for line in (shipped / "keep.jsonl").read_text().splitlines()]
    assert len(rows) >= 50
    for row in rows:
        system, user, reply = (m["content"] for m in row["messages"])
        assert system == SYSTEM and user.startswith("Passages:\n\n[1] ") and "\n\nQuestion: " in user
        span, n = re.fullmatch(r"(.+) \[(\d+)\]", reply).groups()  # type: ignore[union-attr]
        passage = user.split(f"\n\n[{n}] ", 1)[1].split("\n\n[", 1)[0]
        assert span in passage, (span, passage)
