"""The OpenVINO backend gives the torch backend's vectors (so a collection keeps one embedder name
whichever backend made its vectors), converts once per cache folder, and an explicit request it
cannot meet is refused rather than quietly served by torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval import embedder_openvino
from retrieval.embedder import SentenceTransformerEmbedder, _use_openvino

pytest.importorskip("openvino")

TEXTS = ["", "Pumps move water uphill.", "naïve café — 東京 🚰",
         "Insulin resistance in skeletal muscle precedes type 2 diabetes. " * 3,
         "pump valve " * 400]  # over the model's 256 tokens: truncated alike


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedders")


@pytest.fixture(scope="module")
def openvino_embedder(cache: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(device="cpu", backend="openvino", cache_dir=cache)


def test_openvino_gives_the_torch_vectors(openvino_embedder: SentenceTransformerEmbedder,
                                          real_embedder: Any) -> None:
    assert openvino_embedder.backend == "openvino" and real_embedder.backend == "torch"
    assert openvino_embedder.name == real_embedder.name
    for batch in (TEXTS, TEXTS[1:2], TEXTS[::-1]):  # mixed lengths padded together, and alone
        got = openvino_embedder.embed_batch(batch)
        want = real_embedder.embed_batch(batch)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.abs(got - want).max() < 1e-5
    small = SentenceTransformerEmbedder(device="cpu", backend="torch", batch_size=2)
    openvino_embedder.batch_size = 2  # batches of two, sorted by length, put back in order
    try:
        assert np.abs(openvino_embedder.embed_batch(TEXTS) - small.embed_batch(TEXTS)).max() < 1e-5
    finally:
        openvino_embedder.batch_size = 16


def test_a_second_load_reads_the_converted_model(openvino_embedder: SentenceTransformerEmbedder,
                                                 cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def no_convert(*_: Any) -> Path:
        raise AssertionError("converted again")

    monkeypatch.setattr(embedder_openvino, "convert", no_convert)
    again = SentenceTransformerEmbedder(device="cpu", backend="auto", cache_dir=cache)
    assert again.backend == "openvino"
    assert [p.name for p in (cache / "openvino").iterdir()] == [again._openvino.path.parent.name]
    assert np.array_equal(again.embed_batch(TEXTS), openvino_embedder.embed_batch(TEXTS))


def test_auto_falls_back_to_torch_where_openvino_cannot_run(tmp_path: Path) -> None:
    st_model = _fake_st_model("mean")
    assert not _use_openvino("auto", "cuda", st_model, tmp_path)
    assert not _use_openvino("auto", "cpu", st_model, None)
    assert not _use_openvino("auto", "cpu", _fake_st_model("cls"), tmp_path)
    assert not _use_openvino("torch", "cpu", st_model, tmp_path)
    assert _use_openvino("auto", "cpu", st_model, tmp_path)


def test_an_explicit_openvino_request_it_cannot_meet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="device is cuda"):
        _use_openvino("openvino", "cuda", _fake_st_model("mean"), tmp_path)
    with pytest.raises(ValueError, match="pooling 'cls'"):
        _use_openvino("openvino", "cpu", _fake_st_model("cls"), tmp_path)
    with pytest.raises(ValueError, match="must be one of auto, torch, openvino"):
        SentenceTransformerEmbedder(device="cpu", backend="onnx")


def _fake_st_model(pooling: str) -> list[Any]:
    """Stands in for a SentenceTransformer where only its module list is read."""
    def module(name: str, config: dict[str, Any] | None = None) -> Any:
        cls = type(name, (), {"get_config_dict": lambda self: config or {}})
        return cls()
    return [module("Transformer"), module("Pooling", {"pooling_mode": pooling}),
            module("Normalize")]



def test_batches_from_several_threads_enter_openvino_one_at_a_time(
        openvino_embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent `infer` calls deadlocked a server in the soak benchmark; searches and ingest
    call the encoder from many threads, so its batches must reach OpenVINO one at a time."""
    import threading
    import time

    encoder = openvino_embedder._openvino
    assert encoder is not None
    inside, most, guard = [0], [0], threading.Lock()
    real = encoder.compiled.create_infer_request

    class Counting:
        def __init__(self) -> None:
            self.request = real()

        def infer(self, inputs: Any) -> Any:
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.02)  # long enough for another thread to arrive
            try:
                return self.request.infer(inputs)
            finally:
                with guard:
                    inside[0] -= 1

    monkeypatch.setattr(encoder, "compiled", type("C", (), {"create_infer_request": Counting})())
    start = threading.Barrier(6)
    results: list[Any] = [None] * 6

    def search(i: int) -> None:
        start.wait()
        results[i] = openvino_embedder.embed_batch([f"question {i}"] * (i + 1))

    threads = [threading.Thread(target=search, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert most[0] == 1 and all(r is not None and r.shape == (i + 1, 384) for i, r in enumerate(results))
