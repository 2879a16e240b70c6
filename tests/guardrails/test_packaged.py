"""The packaged offensive probe: present, on the packaged embedder, with its held-out figures."""

from __future__ import annotations

from guardrails.serving import packaged_registry
from guardrails.training import PACKAGED_NAME


def test_the_packaged_probe_is_there_with_its_held_out_figures() -> None:
    record = packaged_registry().get(PACKAGED_NAME)
    assert record.embedder == "all-MiniLM-L6-v2" and record.labels == ["clean", "offensive"]
    probe_figures = record.metrics["held_out"]["probe"]
    assert probe_figures["precision"] > 0.8 and probe_figures["recall"] > 0.8
