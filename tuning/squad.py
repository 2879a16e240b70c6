"""SQuAD as held-out knowledge bases and as grounded-QA training records, with no model loaded.

`load_squad` reads the shared one-paragraph-per-line file into articles; `split_of` assigns every
article, by a hash of its title, to "train", "calib" or "eval"; `write_kb` writes some articles of one
split as a knowledge base (documents plus golden questions in the kb_dev format) with answerable,
on-topic unanswerable and off-topic unanswerable questions; `build_examples` turns questions into chat
records in exactly the prompt serving builds, using a search and a renderer the caller supplies.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generation.grounding import REFUSAL, Passage, content_words
from retrieval.types import Hit

from .errors import DatasetError, InvalidConfig

__all__ = [
    "Article", "BuildReport", "KBSummary", "Paragraph", "Question", "article_text", "build_examples",
    "doc_name", "load_squad", "split_of", "write_kb",
]

SPLITS = ("train", "calib", "eval")
EVAL_SHARE = 0.11  # of 442 articles: 47 by hash + Spectre = 48 (40 ingested + 8 off-topic)
CALIB_SHARE = 0.11  # 50 by hash + Zelda = 51
PRESENT_SHARE = 0.75  # of an answer's content words in one document: treated as answerable there
FORCED = {"Spectre_(2015_film)": "eval", "The_Legend_of_Zelda:_Twilight_Princess": "calib"}
Messages = list[dict[str, str]]
Search = Callable[[str, int], list[Hit]]
Render = Callable[[str, list[Hit]], tuple[list[Passage], Messages] | None]


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    answerable: bool

    def __post_init__(self) -> None:
        if self.answerable and not self.answers:
            raise ValueError(f"question {self.id!r} is answerable but has no answers")


@dataclass(frozen=True)
class Paragraph:
    context: str
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[Paragraph, ...]


def _answers(raw: Any) -> tuple[str, ...]:
    """Distinct answer texts, in order; accepts plain strings or SQuAD's {"text": ...} objects."""
    texts = (a["text"] if isinstance(a, dict) else a for a in raw or ())
    return tuple(dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()))


def load_squad(path: str | Path) -> list[Article]:
    """Articles of a (gzipped) JSONL file of {title, context, qas}, paragraphs in file order."""
    path = Path(path)
    grouped: dict[str, list[Paragraph]] = {}
    with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz"
          else path.open(encoding="utf-8")) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                qs = tuple(Question(id=str(q["id"]), question=q["question"], answers=_answers(q["answers"]),
                                    answerable=bool(q.get("answerable", bool(q["answers"]))))
                           for q in rec["qas"])
                grouped.setdefault(rec["title"], []).append(Paragraph(rec["context"], qs))
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(f"{path}: not a SQuAD paragraph record ({exc})", number) from exc
    return [Article(title, tuple(paras)) for title, paras in grouped.items()]


def split_of(title: str) -> str:
    """"eval", "calib" or "train" for an article, fixed by the sha1 of its title.

    "eval" (about 48 articles) is the held-out knowledge base: 40 articles to ingest and 8 whose
    questions serve as off-topic unanswerables. "calib" (about 48) is for fitting an answerability
    classifier and thresholds. Everything else is "train". No training example, classifier or threshold
    may ever see the eval split: it measures them. The two articles with SQuAD 2.0 unanswerable questions
    are forced, Spectre to "eval" and Zelda: Twilight Princess to "calib", so neither reaches "train".
    """
    if title in FORCED:
        return FORCED[title]
    u = int(hashlib.sha1(title.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    return "eval" if u < EVAL_SHARE else "calib" if u < EVAL_SHARE + CALIB_SHARE else "train"


def doc_name(title: str) -> str:
    """A safe file name for an article: word characters and ().,'- kept, any other run one '_'."""
    stem = re.sub(r"_+", "_", re.sub(r"[^\w().,'-]+", "_", title)).strip("._") or "article"
    return f"{stem[:150]}.txt"


def article_text(title: str, paragraphs: Sequence[str | Paragraph]) -> str:
    """The document: the title (underscores as spaces), a blank line, paragraphs between blank lines."""
    body = [(p if isinstance(p, str) else p.context).strip() for p in paragraphs]
    return "\n\n".join([title.replace("_", " ").strip(), *body]) + "\n"


def _norm(text: str) -> str:
    """As generation.evaluation matches answers: whitespace collapsed, lower case."""
    return " ".join(text.split()).lower()


def _in_kb(answer: str, kb: str, vocabs: Sequence[set[str]]) -> bool:
    """Whether the KB may hold `answer`: verbatim (any case), or as >= 3/4 of its content words in one
    document, which catches rewordings such as "1755 and 1764" beside "1756 to 1763" or
    "black Bermudians" for "Bermudian blacks"."""
    if _norm(answer) in kb:
        return True
    words = set(content_words(answer))
    return bool(words) and any(len(words & v) >= PRESENT_SHARE * len(words) for v in vocabs)


@dataclass(frozen=True)
class KBSummary:
    split: str
    docs: int
    words: int
    paragraphs_written: int
    paragraphs_left_out: int
    answerable: int
    unanswerable_on_topic: int  # of which `unanswerable_squad2` are SQuAD 2.0's own
    unanswerable_squad2: int
    unanswerable_off_topic: int
    rejected_answer_in_kb: int  # candidate unanswerables dropped: the KB may hold an answer
    offtopic_articles: tuple[str, ...] = field(default=())

    @property
    def questions(self) -> int:
        return self.answerable + self.unanswerable_on_topic + self.unanswerable_off_topic


@dataclass(frozen=True)
class _Doc:
    article: Article
    written: tuple[Paragraph, ...]
    left_out: tuple[Paragraph, ...]

    @property
    def name(self) -> str:
        return doc_name(self.article.title)

    @property
    def text(self) -> str:
        return article_text(self.article.title, self.written)


def _choose_articles(articles: Sequence[Article], split: str, n_articles: int, n_offtopic: int,
                     rng: random.Random) -> tuple[list[Article], list[Article]]:
    """(ingested, off-topic): articles with SQuAD 2.0 unanswerables are ingested first."""
    pool = sorted((a for a in articles if split_of(a.title) == split), key=lambda a: a.title)
    if len(pool) < n_articles + n_offtopic:
        raise InvalidConfig(f"split {split!r} holds {len(pool)} articles, fewer than n_articles "
                            f"{n_articles} + n_offtopic_articles {n_offtopic}; lower them")
    rng.shuffle(pool)
    pool.sort(key=lambda a: not any(not q.answerable for p in a.paragraphs for q in p.questions))
    return pool[:n_articles], pool[n_articles:n_articles + n_offtopic]


def _layout(article: Article, per_article: int, rng: random.Random) -> _Doc:
    """The first `per_article` paragraphs, 1-2 of them (never all) left out of the file."""
    chosen = article.paragraphs[:per_article]
    n_out = min(rng.choice((1, 2)), len(chosen) - 1)
    out = set(rng.sample(range(len(chosen)), n_out))
    return _Doc(article, tuple(p for i, p in enumerate(chosen) if i not in out),
                tuple(chosen[i] for i in sorted(out)))


def _record(qid: str, q: Question, answers: Sequence[str], doc: str | None, kind: str) -> dict[str, Any]:
    return {"id": qid, "question": q.question, "answers": list(answers), "doc": doc,
            "answerable": doc is not None, "type": kind, "match": "any" if doc else "none",
            "squad_id": q.id}


def _answerable(docs: Sequence[_Doc], per_article: int, rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for d in docs:
        text = d.text
        cands = [q for p in d.written for q in p.questions
                 if q.answerable and any(a in text for a in q.answers)]
        for q in rng.sample(cands, min(per_article, len(cands))):
            out.append(_record("", q, [a for a in q.answers if a in text], d.name, "squad"))
    return out


def write_kb(articles: Sequence[Article], out_dir: str | Path, split: str, n_articles: int = 40,
             n_offtopic_articles: int = 8, paragraphs_per_article: int = 20,
             answerable_per_article: int = 6, seed: int = 0, n_on_topic: int = 30,
             n_off_topic: int = 30) -> KBSummary:
    """Write `n_articles` articles of `split` to out_dir/docs and golden questions to
    out_dir/questions.jsonl (kb_dev format); the same files for the same inputs and seed.

    Answerable questions come from written paragraphs and their answer is in the file verbatim.
    Unanswerables are kept only when none of their answers occurs in any written document (compared
    as the evaluator does: case-insensitive, whitespace collapsed) nor has 3/4 of its content words in
    one written document: on-topic ones from left-out paragraphs plus, up to half of `n_on_topic`,
    SQuAD 2.0's own from the written articles; off-topic ones from `n_offtopic_articles` further
    articles of the split that are not written.
    """
    if split not in SPLITS:
        raise InvalidConfig(f"split {split!r} must be one of {', '.join(SPLITS)}")
    for name, value in (("n_articles", n_articles), ("paragraphs_per_article", paragraphs_per_article)):
        if value < 1:
            raise InvalidConfig(f"{name} {value!r} must be >= 1")
    rng = random.Random(f"{seed}:{split}")
    ingested, offtopic = _choose_articles(articles, split, n_articles, n_offtopic_articles, rng)
    docs = [_layout(a, paragraphs_per_article, rng) for a in ingested]
    names = [d.name for d in docs]
    if len(set(names)) != len(names):
        raise DatasetError("two article titles map to the same document name")
    docs_dir = Path(out_dir) / "docs"
    docs_dir.mkdir(parents=True, exist_ok=True)
    stale = sorted(p.name for p in docs_dir.iterdir() if p.name not in names)
    if stale:
        raise InvalidConfig(f"{docs_dir} already holds other files ({', '.join(stale[:3])}, ...): "
                            "use an empty folder so the KB holds only what the questions assume")
    for d in docs:
        (docs_dir / d.name).write_text(d.text, encoding="utf-8")

    kb = _norm("\n\n".join(d.text for d in docs))
    vocabs = [set(content_words(d.text)) for d in docs]

    def absent(qs: Iterable[Question]) -> list[Question]:
        return [q for q in qs if not any(_in_kb(a, kb, vocabs) for a in q.answers)]

    left = [q for d in docs for p in d.left_out for q in p.questions if q.answerable]
    squad2 = [q for a in ingested for p in a.paragraphs for q in p.questions if not q.answerable]
    far = [q for a in offtopic for p in a.paragraphs for q in p.questions if q.answerable]
    left_ok, far_ok = absent(left), absent(far)
    n_sq2 = min(len(squad2), n_on_topic // 2)
    on_topic = [_record("", q, [], None, "unanswerable_on_topic")
                for q in rng.sample(squad2, n_sq2) +
                rng.sample(left_ok, min(len(left_ok), n_on_topic - n_sq2))]
    off_topic = [_record("", q, [], None, "unanswerable_off_topic")
                 for q in rng.sample(far_ok, min(len(far_ok), n_off_topic))]
    answerable = _answerable(docs, answerable_per_article, rng)
    records = answerable + on_topic + off_topic
    with (Path(out_dir) / "questions.jsonl").open("w", encoding="utf-8") as fh:
        for i, rec in enumerate(records, 1):
            rec["id"] = f"sq-{split}-{i:04d}"
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return KBSummary(
        split=split, docs=len(docs), words=sum(len(d.text.split()) for d in docs),
        paragraphs_written=sum(len(d.written) for d in docs),
        paragraphs_left_out=sum(len(d.left_out) for d in docs), answerable=len(answerable),
        unanswerable_on_topic=len(on_topic), unanswerable_squad2=n_sq2,
        unanswerable_off_topic=len(off_topic),
        rejected_answer_in_kb=len(left) - len(left_ok) + len(far) - len(far_ok),
        offtopic_articles=tuple(a.title for a in offtopic))


@dataclass
class BuildReport:
    """What `build_examples` kept (per kind) and skipped (per reason)."""

    kept: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def unanswerable_share(self) -> float:
        total = sum(self.kept.values())
        return (total - self.kept["answerable"]) / total if total else 0.0


def _cited_answer(answers: Sequence[str], shown: Sequence[Passage]) -> str | None:
    """"answer [n]" for the first shown passage holding an answer (exact first, then any case);
    the answer is written as the passage has it."""
    for p in shown:
        for a in answers:
            if a in p.text:
                return f"{a} [{p.n}]"
    for p in shown:
        low = p.text.lower()
        for a in answers:
            at = low.find(a.lower())
            if at >= 0 and len(low) == len(p.text):  # same length: the index maps to the original
                return f"{p.text[at:at + len(a)]} [{p.n}]"
    return None


def _without_answers(hits: Sequence[Hit], answers: Sequence[str], k: int) -> list[Hit]:
    keys = [_norm(a) for a in answers]
    return [h for h in hits if not any(key in _norm(h.text) for key in keys)][:k]


def _example(q: Question, kind: str, hits: list[Hit], render: Render) -> dict[str, Any] | str:
    """One chat record, or the reason there is none."""
    if not hits:
        return "no hits without the answer" if kind == "unanswerable_hard" else "no hits"
    rendered = render(q.question, hits)
    if rendered is None:
        return "refused before the model"
    shown, messages = rendered
    if kind == "answerable":
        reply = _cited_answer(q.answers, shown)
        if reply is None:
            return "answer not in shown passages"
    else:
        reply = REFUSAL
    return {"messages": [*messages, {"role": "assistant", "content": reply}],
            "meta": {"id": q.id, "kind": kind}}


def build_examples(questions: Sequence[Question], search: Search, render: Render, *, k: int = 5,
                   unanswerable_share: float = 0.25, seed: int = 0) -> tuple[list[dict[str, Any]],
                                                                              BuildReport]:
    """Chat records for grounded QA from SQuAD questions, in serving's prompt, and what was skipped.

    `search(question, k)` is ragtune's search over a collection of the *train* articles; `render`
    returns the passages as serving shows them and its messages, or None where serving refuses without
    calling the model. Answerable questions are answered "answer [n]", n the first shown passage holding
    the answer. About `unanswerable_share` of the records answer REFUSAL: questions whose hits holding
    any answer were dropped (hard, same-topic negatives) and SQuAD 2.0's own unanswerables, alternating
    while both last. Each question is used at most once; records carry meta {id, kind}.
    """
    if not 0.0 <= unanswerable_share < 1.0:
        raise ValueError(f"unanswerable_share {unanswerable_share!r} must be in [0, 1)")
    if k < 1:
        raise ValueError(f"k {k!r} must be >= 1")
    rng = random.Random(seed)
    answerable = [q for q in questions if q.answerable]
    squad2 = [q for q in questions if not q.answerable]
    rng.shuffle(answerable)
    rng.shuffle(squad2)
    out: list[dict[str, Any]] = []
    report = BuildReport()
    i = 0
    while i < len(answerable):
        due = len(out) - report.kept["answerable"] < unanswerable_share * (len(out) + 1)
        if due and squad2 and report.kept["unanswerable_squad2"] <= report.kept["unanswerable_hard"]:
            q, kind = squad2.pop(), "unanswerable_squad2"
            hits = search(q.question, k)
        else:
            q, i = answerable[i], i + 1
            kind = "unanswerable_hard" if due else "answerable"
            hits = (_without_answers(search(q.question, 3 * k), q.answers, k) if due
                    else search(q.question, k))
        made = _example(q, kind, hits, render)
        if made == "no hits without the answer":  # every hit holds it: usable as answerable
            report.skipped[made] += 1
            kind, made = "answerable", _example(q, "answerable", search(q.question, k), render)
        if isinstance(made, str):
            report.skipped[made] += 1
        else:
            out.append(made)
            report.kept[kind] += 1
    return out, report
