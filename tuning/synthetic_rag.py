"""RAG-shaped synthetic examples from a knowledge base, in exactly the prompt layout serving uses.

For a sampled chunk the chat model writes a question the chunk answers and the answer
(`answers="model"`), or, for models too small for that, a sentence of the chunk is the answer and
the model writes only its question, built from the sentence when the reply is not one
(`answers="span"`, tuning/synthetic_spans.py). Every question ends with "?". An answerable
example shows the source chunk among k-1 other chunks (the ones most similar to the question, then
random ones), shuffled so the citation number varies, numbered and rendered by
`generation.grounding.build_messages` as `ragtune ask` does; the answer ends citing the source
chunk's `[n]`. An unanswerable example asks the same kind of question over chunks of other
documents only, none of which supports the answer, and is answered with the refusal sentence.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, Protocol

from generation.grounding import REFUSAL, Passage, build_messages, content_words, focus, support_score
from retrieval.collection import Collection
from retrieval.embedder import Embedder
from retrieval.types import Hit

from .errors import InvalidConfig, TuningError
from .synthetic import (
    ChatClient,
    NearDuplicates,
    Progress,
    SyntheticExample,
    SyntheticSet,
    clean_reply,
    is_garbage,
)
from .synthetic_spans import answer_spans, as_question, question_request, template_question

__all__ = ["ChunkSource", "CollectionChunks", "cite", "generate_from_collection", "parse_qa"]

_MARKER = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")
_QA = re.compile(r"question\s*:\s*(?P<q>.+?)\s*\n\s*\**answer\**\s*:\s*(?P<a>.+)",
                 re.IGNORECASE | re.DOTALL)
MIN_CHUNK_WORDS = 5
ANSWER_KINDS = ("model", "span")
GIVE_UP_AFTER = 8  # tries without one usable reply: the model cannot do this, say so now


class ChunkSource(Protocol):
    """What the generator needs from a knowledge base."""

    def chunk_refs(self) -> list[tuple[int, str]]: ...

    def chunks(self, ids: list[int]) -> list[Hit]: ...

    def similar(self, text: str, k: int) -> list[Hit]: ...


class CollectionChunks:
    """A collection and the embedder it was built with, as a ChunkSource (dense search)."""

    def __init__(self, collection: Collection, embedder: Embedder) -> None:
        self.collection = collection
        self.embedder = embedder

    def chunk_refs(self) -> list[tuple[int, str]]:
        return self.collection.chunk_refs()

    def chunks(self, ids: list[int]) -> list[Hit]:
        return self.collection.chunks(ids)

    def similar(self, text: str, k: int) -> list[Hit]:
        return self.collection.search(self.embedder.embed_batch([text]), min(k, 1000))[0]


def _qa_request(chunk: Hit) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You write question and answer pairs about documents."},
            {"role": "user", "content": (
                f"Passage (from {chunk.source}):\n{chunk.text.strip()}\n\n"
                "Write one question a user might ask that this passage answers, and its answer in "
                "one or two sentences using only facts from the passage. Do not mention 'the "
                "passage'. Reply in exactly this form:\nQuestion: ...\nAnswer: ...")}]


def parse_qa(reply: str) -> tuple[str, str] | None:
    """(question, answer) from a 'Question: ... Answer: ...' or JSON reply; None if unusable."""
    pair: tuple[Any, Any] | None = None
    try:
        data = json.loads(reply)
        if isinstance(data, dict):
            pair = data.get("question"), data.get("answer")
    except ValueError:
        match = _QA.search(reply)
        pair = (match["q"], match["a"]) if match else None
    if pair is None or not all(isinstance(x, str) for x in pair):
        return None
    question, answer = clean_reply(pair[0]), _MARKER.sub("", clean_reply(pair[1])).strip()
    if "?" in question:  # a question, without what the model wrote after it
        question = question[: question.index("?") + 1]
    if is_garbage(question, min_words=3) or is_garbage(answer) or not question.endswith("?"):
        return None
    return question, answer


def cite(answer: str, n: int, suffix: str | None = None) -> str:
    """The answer with `[n]` before its final punctuation, then `suffix` (e.g. "Sources: [{n}]")."""
    body = " ".join(_MARKER.sub("", answer).split())
    body = f"{body[:-1]} [{n}]{body[-1]}" if body[-1:] in (".", "!", "?") else f"{body} [{n}]"
    return f"{body}\n{suffix.format(n=n)}" if suffix else body


def check_suffix(suffix: str | None) -> None:
    if suffix is None:
        return
    try:
        ok = "{n}" in suffix and suffix.format(n=1) != suffix
    except (KeyError, IndexError, ValueError):
        ok = False
    if not ok:
        raise InvalidConfig(f"answer suffix {suffix!r} must be a template naming the citation as {{n}} "
                            "and nothing else in braces, e.g. 'Sources: [{n}]'")


def _passages(hits: list[Hit]) -> list[Passage]:
    return [Passage(n=i, text=h.text, source=h.source, page=h.page, score=h.score, doc_id=h.doc_id,
                    chunk_id=h.chunk_id, metadata=h.metadata) for i, h in enumerate(hits, 1)]


class _Builder:
    """The state of one run: the chunk refs, the random stream, the settings."""

    def __init__(self, source: ChunkSource, k: int, rng: random.Random, min_support: float,
                 focus_sentences: int, suffix: str | None) -> None:
        self.source, self.k, self.rng = source, k, rng
        self.refs = source.chunk_refs()
        self.min_support, self.focus_sentences, self.suffix = min_support, focus_sentences, suffix

    def _fill(self, have: list[Hit], wanted: int, doc_ok: Any) -> list[Hit]:
        """`have`, topped up with random chunks of documents `doc_ok` accepts, up to `wanted`."""
        used = {h.chunk_id for h in have}
        pool = [cid for cid, doc in self.refs if cid not in used and doc_ok(doc)]
        extra = self.source.chunks(self.rng.sample(pool, min(len(pool), 4 * wanted)))
        return (have + extra)[:wanted]

    def answerable(self, src: Hit, question: str, answer: str) -> SyntheticExample | str:
        same = " ".join(src.text.split())
        near = [h for h in self.source.similar(question, self.k + 5)
                if h.chunk_id != src.chunk_id and " ".join(h.text.split()) != same][: self.k - 1]
        others = self._fill(near, self.k - 1, lambda doc: True)
        hits = [src, *others]
        self.rng.shuffle(hits)
        passages = _passages(hits)
        if self.focus_sentences:
            passages = focus(question, passages, self.focus_sentences)
        n = next(p.n for p in passages if p.chunk_id == src.chunk_id)
        if support_score(answer, [passages[n - 1]]) < self.min_support:
            return "answer_not_in_focused_chunk"
        messages = build_messages(question, passages)
        messages.append({"role": "assistant", "content": cite(answer, n, self.suffix)})
        return SyntheticExample(messages, {"kind": "answerable", "cited": n,
                                           "source_chunk": src.chunk_id, "source_doc": src.doc_id,
                                           "passage_chunks": [p.chunk_id for p in passages]})

    def unanswerable(self, src: Hit, question: str, answer: str) -> SyntheticExample | str:
        def doc_ok(doc: str) -> bool:
            return doc != src.doc_id

        near = [h for h in self.source.similar(question, 4 * self.k + 10) if doc_ok(h.doc_id)]
        hits = [h for h in self._fill(near, 3 * self.k, doc_ok)
                if support_score(answer, _passages([h])) < self.min_support][: self.k]
        if not hits:
            return "no_unrelated_passages"
        self.rng.shuffle(hits)
        passages = _passages(hits)
        if self.focus_sentences:
            passages = focus(question, passages, self.focus_sentences)
        messages = build_messages(question, passages)
        messages.append({"role": "assistant", "content": REFUSAL})
        return SyntheticExample(messages, {"kind": "unanswerable", "source_chunk": src.chunk_id,
                                           "source_doc": src.doc_id,
                                           "passage_chunks": [p.chunk_id for p in passages]})


def generate_from_collection(source: ChunkSource, client: ChatClient, n: int,
                             unanswerable_fraction: float = 0.2, k: int = 3, seed: int = 42,
                             answer_suffix: str | None = None, temperature: float = 0.7,
                             focus_sentences: int = 0, min_support: float = 0.5,
                             max_attempts: int | None = None, dedupe_threshold: float = 0.8,
                             max_tokens: int = 384, progress: Progress | None = None,
                             answers: str = "model") -> SyntheticSet:
    """Up to `n` RAG examples, `unanswerable_fraction` of them answered with the refusal sentence.

    `k` passages per prompt. `focus_sentences` > 0 shortens passages as serving does with
    RAGTUNE_FOCUS_SENTENCES. A question whose answer shares fewer than `min_support` of its content
    words with its chunk is dropped as not grounded. `answers`: "model" (the model writes question
    and answer) or "span" (a sentence of the chunk answers; the model writes only the question).
    With "model", GIVE_UP_AFTER tries without one usable reply end the run (`stopped` says why).
    """
    if answers not in ANSWER_KINDS:
        raise InvalidConfig(f"answers {answers!r} must be one of {', '.join(ANSWER_KINDS)}")
    if n < 1:
        raise InvalidConfig(f"n {n!r} must be >= 1")
    if not 0.0 <= unanswerable_fraction <= 1.0:
        raise InvalidConfig(f"unanswerable_fraction {unanswerable_fraction!r} must be in [0, 1]")
    if not 1 <= k <= 20:
        raise InvalidConfig(f"k {k!r} must be between 1 and 20")
    check_suffix(answer_suffix)
    rng = random.Random(seed)
    run = _Builder(source, k, rng, min_support, focus_sentences, answer_suffix)
    if not run.refs:
        raise TuningError("the collection holds no chunks: ingest documents first")
    n_unanswerable = round(n * unanswerable_fraction)
    if n_unanswerable and len({doc for _, doc in run.refs}) < 2:
        raise TuningError("unanswerable examples need passages from other documents, and the "
                          "collection holds one document: add documents or set the unanswerable "
                          "fraction to 0")
    kinds = ["unanswerable"] * n_unanswerable + ["answerable"] * (n - n_unanswerable)
    rng.shuffle(kinds)
    order = [cid for cid, _ in run.refs]
    rng.shuffle(order)
    max_attempts = max_attempts if max_attempts is not None else 3 * n + 10
    out = SyntheticSet(examples=[])
    seen = NearDuplicates(dedupe_threshold)
    while len(out.examples) < n and out.attempts < max_attempts:
        src = source.chunks([order[out.attempts % len(order)]])[0]
        visit = out.attempts // len(order)  # the how-many-th time this chunk is used
        out.attempts += 1
        kind = kinds[len(out.examples)]
        made = _one(run, client, src, kind, seen, temperature, max_tokens) if answers == "model" \
            else _one_span(run, client, src, kind, seen, temperature, visit)
        if isinstance(made, str):
            out.dropped[made] += 1
        else:
            out.examples.append(made)
        if progress:
            progress(len(out.examples), out.attempts)
        unusable = out.dropped["unparsable_reply"] + out.dropped["answer_not_in_chunk"]
        if answers == "model" and not out.examples and unusable >= GIVE_UP_AFTER:
            out.stopped = (f"{unusable} of the model's first {out.attempts} replies were no usable "
                           "question and answer: it is too small for this; use --answers span, or "
                           "a stronger model (--endpoint)")
            break
    return out


def _one_span(run: _Builder, client: ChatClient, src: Hit, kind: str, seen: NearDuplicates,
              temperature: float, visit: int) -> SyntheticExample | str:
    """One example whose answer is a sentence of chunk `src` (its `visit`-th best one)."""
    spans = answer_spans(src.text)
    if not spans:
        return "no_answer_sentence"
    sentence = spans[visit % len(spans)]
    reply = client.complete(question_request(sentence, src.source), temperature, 48)
    question = as_question(reply, sentence) or template_question(sentence, src.source)
    if seen.is_duplicate(question):
        return "near_duplicate"
    made = run.answerable(src, question, sentence) if kind == "answerable" else \
        run.unanswerable(src, question, sentence)
    if not isinstance(made, str):
        seen.add(question)
        made.meta["question_by"] = "model" if as_question(reply, sentence) else "template"
    return made


def _one(run: _Builder, client: ChatClient, src: Hit, kind: str, seen: NearDuplicates,
         temperature: float, max_tokens: int) -> SyntheticExample | str:
    """One example from chunk `src`, or the reason it was dropped."""
    if len(content_words(src.text)) < MIN_CHUNK_WORDS:
        return "chunk_too_short"
    qa = parse_qa(client.complete(_qa_request(src), temperature, max_tokens))
    if qa is None:
        return "unparsable_reply"
    question, answer = qa
    if support_score(answer, _passages([src])) < run.min_support:
        return "answer_not_in_chunk"
    if seen.is_duplicate(question):
        return "near_duplicate"
    made = run.answerable(src, question, answer) if kind == "answerable" else \
        run.unanswerable(src, question, answer)
    if not isinstance(made, str):
        seen.add(question)
    return made
