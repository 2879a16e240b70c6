"""The tuning worker wires only what a job needs: its gate's accuracy check answers a collection's
golden questions through the corpus (embedder and catalog), without the server's Services."""

from __future__ import annotations

import json
from pathlib import Path

from api.corpus import Corpus
from api.settings import Settings
from api.tuning_worker import make_hooks
from generation.adapter_registry import AdapterRegistry
from ingest.pipeline import IngestPipeline
from tests.fakes import FakeEmbedder
from tests.generation.fakes import ScriptedGenerator
from tests.helpers import text_doc


def test_the_gate_accuracy_hook_answers_through_the_corpus(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", min_score=-1, answer_style="span")
    corpus = Corpus(settings, embedder=FakeEmbedder())
    corpus.create_collection("kb")
    IngestPipeline.for_collection(corpus.collection("kb"), corpus.embedder).run(
        [text_doc("b.txt", "Invoices are paid within thirty days. Receipts are kept.")])
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"question": "When are invoices paid?", "answers": ["thirty days"], "answerable": True,
         "doc": "b.txt"},
        {"question": "Who audits the receipts?", "answerable": False}]) + "\n")
    hooks = make_hooks(settings, corpus, AdapterRegistry(settings.data_dir / "adapters"))
    assert hooks.eval_accuracy is not None

    right = hooks.eval_accuracy("kb", questions, ScriptedGenerator(lambda _: "thirty days [1]"))
    wrong = hooks.eval_accuracy("kb", questions, ScriptedGenerator(lambda _: "Receipts [1]"))

    assert right["answer_accuracy"] == 1.0 and right["hit_at_k"] == 1.0
    assert wrong["answer_accuracy"] == 0.0
