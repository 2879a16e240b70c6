"""The corpus wiring: a missing collection is reported without loading any model."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.corpus import Corpus
from api.settings import Settings
from retrieval.errors import CollectionNotFound


def test_a_missing_collection_is_reported_before_the_embedder_loads(tmp_path: Path) -> None:
    corpus = Corpus(Settings(data_dir=tmp_path / "data", embedder="/no/such/model"))
    with pytest.raises(CollectionNotFound):
        corpus.search("nope", "anything", 3)
    assert corpus._embedder is None, "the embedder was loaded for a collection that is not there"
