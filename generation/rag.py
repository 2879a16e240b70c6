"""Answer a question from retrieved passages: refuse below a retrieval threshold without calling
the model, fit the prompt in the context budget, stream the answer, then map citations and check
support. Works with any `Generator`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from retrieval.types import Hit

from .adapters import is_base
from .answerability import AnswerabilityModel, features, verified
from .errors import InvalidRequest
from .generator import Generator, Messages, SamplingConfig
from .grounding import (
    MODES,
    REFUSAL,
    Example,
    Passage,
    attribute,
    extract_citations,
    final_answer,
    fit_passages,
    focus,
    is_refusal,
    recite,
    support_score,
    unsupported_facts,
)
from .lines import Embed, first_piece, rank_lines, shorten
from .qualifiers import context_of, mismatch, names_asked
from .spans import SpanConstraint
from .verifier import Verifier

ANSWER_STYLES = ("span", "line")
UnknownWords = Callable[[list[str]], list[str]]  # which of these words no chunk holds


@dataclass(frozen=True)
class AskConfig:
    k: int = field(default=5, metadata={"help": "passages retrieved"})
    max_new_tokens: int = field(default=256, metadata={"help": "answer length cap"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy"})
    mode: str = field(default="zero_shot", metadata={"help": "zero_shot | few_shot | cot"})
    examples: tuple[Example, ...] = ()
    min_score: float = field(default=0.3, metadata={"help": "refuse if the best passage "
                                                            "scores below this"})
    support_threshold: float = field(default=0.5, metadata={"help": "grounded if this share of "
                                                                    "answer words is supported"})
    refuse_ungrounded: bool = field(default=False, metadata={"help": "refuse instead of giving an "
                                                                     "answer that is not grounded"})
    repetition_penalty: float = field(default=1.0, metadata={"help": "1 = off"})
    focus_sentences: int = field(default=0, metadata={"help": "0 = whole chunks; else show the "
                                                              "model only this many best lines "
                                                              "of each chunk"})
    loop_ngram: int = field(default=8, metadata={"help": "stop when the answer starts repeating "
                                                         "itself (n-gram tokens; 0 = off)"})
    stop: tuple[str, ...] = field(default=(), metadata={"help": "end the answer at these"})
    adapter: str | None = field(default=None, metadata={"help": "loaded adapter to answer with; "
                                                                "None = the base model"})
    span_decoding: bool = field(default=False, metadata={
        "help": "the answer may only copy text from the shown passages, plus [n] markers, glue "
                "words and the refusal sentence (generation/spans.py)"})
    answerability: AnswerabilityModel | None = field(default=None, metadata={
        "help": "refuse answers this classifier scores under its threshold; None = off"})
    answer_checks: bool = field(default=True, metadata={
        "help": "with the classifier on, also refuse answers to another question: a name the "
                "collection never mentions, another period, a count or kind not asked for "
                "(generation/qualifiers.py); off records the classifier's features only"})
    answer_style: str = field(default="span", metadata={
        "help": "span: the model's words | line: the whole sentence or table row holding the "
                "answer, chosen with the model's answer (generation/lines.py)"})

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 100:
            raise InvalidRequest(f"k {self.k!r} must be between 1 and 100")
        if self.mode not in MODES:
            raise InvalidRequest(f"mode {self.mode!r} must be one of {', '.join(MODES)}")
        if self.mode == "few_shot" and not self.examples:
            raise InvalidRequest("mode 'few_shot' needs at least one example")
        if not 0 <= self.support_threshold <= 1:
            raise InvalidRequest(f"support_threshold {self.support_threshold!r} must be in [0, 1]")
        if self.answer_style not in ANSWER_STYLES:
            raise InvalidRequest(f"answer_style {self.answer_style!r} must be one of "
                                 f"{', '.join(ANSWER_STYLES)}")


@dataclass
class Answer:
    answer: str
    citations: list[Passage]
    refused: bool
    grounded: bool
    support_score: float
    passages: list[Passage]
    refusal_reason: str | None = None
    stats: dict[str, float] = field(default_factory=dict)
    adapter: str | None = None  # the adapter that generated the answer; None: the base, or no call
    answerable_score: float | None = None  # the answerability classifier's score, when it ran


def to_passages(hits: Sequence[Hit]) -> list[Passage]:
    return [Passage(n=i, text=h.text, source=h.source, page=h.page, score=h.score,
                    doc_id=h.doc_id, chunk_id=h.chunk_id, metadata=h.metadata)
            for i, h in enumerate(hits, 1)]


def best_score(passages: Sequence[Passage]) -> float:
    return max((p.score for p in passages), default=float("-inf"))


def decode_stats(constraint: SpanConstraint) -> dict[str, float]:
    """What the constrained decoder saw, as numbers (absent when it saw nothing)."""
    trace = constraint.trace
    stats = {"mean_logprob": trace.mean_logprob, "refusal_margin": trace.refusal_margin,
             "forced_steps": float(trace.forced)}
    return {k: v for k, v in stats.items() if v is not None}


def refusal(passages: list[Passage], reason: str) -> Answer:
    return Answer(answer=REFUSAL, citations=[], refused=True, grounded=True, support_score=1.0,
                  passages=passages, refusal_reason=reason)


class RagAnswerer:
    """`get_generator` is called only when the model is needed, so refusals below the retrieval
    threshold never load it. `embed` (texts to normalised vectors) lets line answers weigh meaning
    as well as words; without it they rank lines on words, the model's answer and retrieval.
    `get_verifier` gives the answer verifier, asked only when the answerability classifier reads
    its scores."""

    def __init__(self, get_generator: Callable[[], Generator], embed: Embed | None = None,
                 get_verifier: Callable[[], Verifier] | None = None) -> None:
        self.get_generator = get_generator
        self.embed = embed
        self.get_verifier = get_verifier

    def stream(self, question: str, hits: Sequence[Hit], config: AskConfig,
               unknown_words: UnknownWords | None = None) -> Iterator[str | Answer]:
        """Yields answer text pieces as they are generated, then one final `Answer`.

        `unknown_words`: which of some words the knowledge base never mentions
        (`Collection.unknown_words`); with the answer checks on, a question naming one
        (`qualifiers.names_asked`) is refused without asking the model."""
        passages = to_passages(hits)
        best = best_score(passages)
        if best < config.min_score:
            why: str | None = f"no passage scored above {config.min_score:g} (best {best:.3f})"
        else:
            unknown = (unknown_words(names_asked(question)) if unknown_words is not None
                       and config.answerability is not None and config.answer_checks else [])
            why = (f"the knowledge base never mentions {', '.join(map(repr, unknown))}"
                   if unknown else None)
        if why is not None:
            yield REFUSAL
            early = refusal(passages, why)
            early.stats["best_score"] = best
            yield early
            return
        generator = self.get_generator()
        kept, messages = self.prompt(question, passages, config, generator)
        observe = config.span_decoding or config.answerability is not None
        # with a classifier to decide refusals, span decoding makes the model always copy its best
        # answer; the classifier sees how much the model wanted to refuse (refusal_margin)
        may_refuse = None if config.span_decoding and config.answerability is not None else REFUSAL
        constraint = SpanConstraint([p.text for p in kept], refusal=may_refuse,
                                    enforce=config.span_decoding) if observe and kept else None
        sampling = SamplingConfig(max_new_tokens=config.max_new_tokens,
                                  temperature=config.temperature, stop=config.stop,
                                  repetition_penalty=config.repetition_penalty,
                                  loop_ngram=config.loop_ngram, constraint=constraint)
        start, pieces = time.perf_counter(), []
        lines = config.answer_style == "line"
        for piece in generator.stream(messages, sampling, adapter=config.adapter):
            pieces.append(piece)
            if not lines:
                yield piece
        by_chunk = {p.chunk_id: p for p in passages}
        cited = [dataclasses.replace(by_chunk[k.chunk_id], n=k.n) for k in kept]
        answer = self.finish("".join(pieces), cited, config)
        if lines:
            answer = self.to_line(question, answer, cited, config)
            yield answer.answer
        answer.stats["generate_s"] = time.perf_counter() - start
        answer.stats["best_score"] = best
        if constraint is not None:
            answer.stats.update(decode_stats(constraint))
        if config.answerability is not None and not answer.refused:
            answer = self.judge(question, kept, answer, config.answerability, config.answer_checks)
        answer.adapter = None if is_base(config.adapter) else config.adapter
        yield answer

    @staticmethod
    def render(question: str, hits: Sequence[Hit], config: AskConfig,
               generator: Generator) -> tuple[list[Passage], Messages] | None:
        """What `stream` would show the model for these hits, or None where it refuses without
        calling the model (best passage under `config.min_score`)."""
        passages = to_passages(hits)
        if best_score(passages) < config.min_score:
            return None
        return RagAnswerer.prompt(question, passages, config, generator)

    @staticmethod
    def prompt(question: str, passages: list[Passage], config: AskConfig,
               generator: Generator) -> tuple[list[Passage], Messages]:
        """The passages as shown (focused, numbered, fitted to the context) and the messages:
        exactly what the model is asked, so training data can be built the same way."""
        shown = focus(question, passages, config.focus_sentences) if config.focus_sentences \
            else passages
        return fit_passages(question, shown, generator.prompt_tokens, generator.context_length,
                            config.max_new_tokens, config.mode, config.examples)

    def answer(self, question: str, hits: Sequence[Hit], config: AskConfig,
               unknown_words: UnknownWords | None = None) -> Answer:
        final = None
        for item in self.stream(question, hits, config, unknown_words):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        return final

    def to_line(self, question: str, answer: Answer, passages: list[Passage],
                config: AskConfig) -> Answer:
        """The model's answer replaced by the passage line that best holds it, cited; the ranking
        goes into `stats` (line_score, line_margin, line_semantic) for the classifier."""
        if answer.refused:
            return answer
        said = first_piece(answer.answer)
        ranked = rank_lines(question, passages, said, self.embed)
        if not ranked:
            return answer
        best = ranked[0]
        runner_up = ranked[1].score if len(ranked) > 1 else 0.0
        text = shorten(best.text, said)
        body, end = (text[:-1], text[-1]) if text[-1] in ".!?" else (text, "")
        line = self.finish(f"{body} [{best.n}]{end}", passages, config)
        line.stats = {**answer.stats, "line_score": best.score,
                      "line_margin": best.score - runner_up, "line_semantic": best.semantic}
        return line

    def judge(self, question: str, shown: list[Passage], answer: Answer,
              model: AnswerabilityModel, checks: bool = True) -> Answer:
        """Score the answer's answerability; refuse it when under the model's threshold or, with
        `checks`, when it answers another question (`qualifiers.mismatch`)."""
        feats = features(question, shown, answer.answer, answer.stats)
        if model.needs_verifier:
            if self.get_verifier is None:
                raise InvalidRequest("this answerability model reads the answer verifier's "
                                     "scores, and no verifier is configured")
            feats.update(verified(question, shown, answer.answer, self.get_verifier()))
        score = round(model.score(feats), 4)
        stats = {**answer.stats, **{f"feature_{k}": v for k, v in feats.items()}}
        cited = {p.doc_id for p in answer.citations}
        why = mismatch(question, answer.answer,
                       context_of([p for p in answer.passages if p.doc_id in cited]
                                  or answer.passages)) if checks else None
        if score >= model.threshold and why is None:
            return dataclasses.replace(answer, answerable_score=score, stats=stats)
        why = why or f"answerable_score {score:.3f} is under the threshold {model.threshold:g}"
        refused = refusal(answer.passages, why)
        return dataclasses.replace(refused, answerable_score=score, stats=stats,
                                   adapter=answer.adapter)

    @staticmethod
    def finish(raw: str, passages: list[Passage], config: AskConfig) -> Answer:
        text = final_answer(raw, config.mode)
        if is_refusal(text) or not text:
            return refusal(passages, "the model found no answer in the passages")
        if config.span_decoding:
            text = recite(text, passages)
        cleaned, cited = extract_citations(attribute(text, passages), passages)
        support = support_score(cleaned, cited or passages)
        grounded = bool(cited) and support >= config.support_threshold \
            and not unsupported_facts(cleaned, cited)
        if config.refuse_ungrounded and not grounded:
            return refusal(passages, f"the answer was not supported by the passages "
                                     f"(support {support:.2f})")
        return Answer(answer=cleaned, citations=cited, refused=False, grounded=grounded,
                      support_score=round(support, 3), passages=passages)
