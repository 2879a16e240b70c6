"""Answer-first synthetic questions, for chat models too small to write a question and its answer.

A 135M-parameter model asked for "Question: ... Answer: ..." about a passage mostly writes neither
(issue 13: 12 of 16 replies unparsable). Here the answer is picked, not written: a sentence of the
chunk that states something checkable (a number, a name, a code word, an "X is Y"), ranked by
`answer_spans`. The model is asked only for the question that sentence answers; a reply that is not
a question about it (`as_question`) is replaced by one built from the sentence (`template_question`).
The example's answer is the sentence itself, which is what serving's `answer_style=line` returns.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from generation.grounding import content_words

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`])")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)]|#+)\s+")
_VERB = re.compile(r"^(?P<subject>(?:\S+\s+){0,7}?\S+)\s+(?P<verb>is|are|was|were|can|must|should|"
                   r"will|has|have|needs|takes|returns|keeps|uses|holds|makes|runs|gives|shows)\s+"
                   r"(?P<rest>.+)$")
_LOWER_FIRST = {"the", "a", "an", "each", "every", "this", "that", "these", "those", "your", "its",
                "their", "our", "all", "some", "any", "no"}
_PRONOUNS = {"it", "they", "this", "that", "these", "those", "he", "she", "we", "you", "there",
             "here", "which"}
_ASKED = re.compile(r"^\s*(?:\d+[.)]\s*|[-*]\s*|q(?:uestion)?\s*\d*\s*[:.-]\s*)", re.IGNORECASE)
MIN_WORDS, MAX_WORDS = 5, 45


def answer_spans(text: str) -> list[str]:
    """The chunk's sentences that could answer a question, best first: whole sentences of
    MIN_WORDS..MAX_WORDS words, ranked by numbers, names, code words and definitions."""
    found: list[tuple[int, int, str]] = []
    for line in text.splitlines():
        line = _BULLET.sub("", line).strip()
        for i, sentence in enumerate(_SPLIT.split(line)):
            sentence = sentence.strip()
            words = sentence.split()
            if i == 0 and _inside(words):
                continue  # the chunk (after its header path) begins inside a sentence
            if not MIN_WORDS <= len(words) <= MAX_WORDS or sentence[-1:] not in ".)!":
                continue
            if words[0].lower().strip(",") in _PRONOUNS or " > " in sentence:
                continue  # leans on the sentence before, or a header path
            found.append((-_score(words), len(found), sentence))
    return [s for _, _, s in sorted(found)]


def _inside(words: list[str]) -> bool:
    """Whether a chunk's first sentence is the tail of one cut by chunking: it starts lowercase,
    and not as a lowercase name does ("ragtune is ...")."""
    return bool(words) and words[0][:1].islower() and not (
        len(words) > 1 and _VERB.match(f"{words[0]} {words[1]} x") is not None)


def _score(words: list[str]) -> int:
    score = 2 * any(any(c.isdigit() for c in w) for w in words)
    score += 2 * any("`" in w or "_" in w or "/" in w for w in words)
    score += min(2, sum(w[:1].isupper() for w in words[1:]))
    score += any(w in ("is", "are", "means") for w in words[1:6])
    return score + (8 <= len(words) <= 30)


def question_request(sentence: str, source: str) -> list[dict[str, str]]:
    """The chat request: the question that `sentence` answers, and nothing else."""
    return [{"role": "system", "content": "You write questions about documents."},
            {"role": "user", "content": (
                f"Sentence (from {source}):\n{sentence}\n\nWrite one question that this sentence "
                "answers, as a user would ask it. Reply with the question only, ending with '?'.")}]


def as_question(reply: str, sentence: str) -> str | None:
    """The question in a model's reply when it is one about `sentence` (3-30 words ending in '?',
    sharing a content word with it, not the sentence itself); else None."""
    for line in reply.strip().splitlines():
        line = _ASKED.sub("", line).strip().strip("\"'*`“”").strip()
        if "?" not in line:
            continue
        question = line[: line.index("?") + 1].strip()
        words = question.split()
        if not 3 <= len(words) <= 30 or sentence.rstrip(".") in question:
            return None
        if not set(content_words(question)) & set(content_words(sentence)):
            return None
        return question[0].upper() + question[1:]
    return None


def template_question(sentence: str, source: str) -> str:
    """A question `sentence` answers, from its own words: "What is X?" for "X is ...", "What does
    X return?" for "X returns ...", else what the document says about the sentence's key words."""
    match = _VERB.match(sentence.rstrip(".!)"))
    if match:
        subject = _subject(match["subject"])
        verb = match["verb"]
        if verb in ("is", "are", "was", "were"):
            return f"What {verb} {subject}?"
        if verb in ("can", "must", "should", "will"):
            passive = match["rest"].startswith("be ")
            return f"What {verb} happen to {subject}?" if passive else f"What {verb} {subject} do?"
        if verb in ("has", "have"):
            return f"What does {subject} have?"
        return f"What does {subject} {verb[:-1]}?"
    doc = PurePosixPath(source).stem.replace("-", " ").replace("_", " ")
    key = " ".join(dict.fromkeys(content_words(sentence)))
    return f"What does {doc} say about {' '.join(key.split()[:4])}?"


def _subject(subject: str) -> str:
    subject = subject.split(",")[0].strip()  # "pages without text, such as scans," -> the noun
    first, _, rest = subject.partition(" ")
    if first.lower() in _LOWER_FIRST or first[1:].islower():  # "The pump", "Keys"; not "API"
        first = first.lower()
    return f"{first} {rest}".strip()
