"""What a question asks for, and whether a text holds it.

A factoid question asks for a number ("how many", "what is the price of ..."), a date ("when",
"what year") or a name ("who"), by the answer-type classes of factoid QA (Li & Roth's NUM, DATE and
HUM:name). An answer line that holds nothing of the kind asked cannot be the answer: the line
ranking (generation/lines.py) prefers lines that hold it, and the answerability classifier
(generation/answerability.py) reads its absence from the answer as a sign the question is not
answered.
"""

from __future__ import annotations

import re

from .grounding import MARKER, stem

# What a question asks for, by the answer-type classes of factoid QA (Li & Roth's NUM, DATE and
# HUM:name): the head noun after the wh-word, or the wh-phrase itself.
_QUANTITY = frozenset(
    "number numbers amount count total cost costs price prices fee fees fare charge charges rate "
    "rates percentage percent proportion share salary wage pay income revenue budget population "
    "capacity size area length width height depth distance weight mass temperature speed age "
    "duration volume".split())
_MEASURES = frozenset("long far old big large tall high deep often fast wide heavy".split())
_DATE = frozenset("year years date dates day month decade century time".split())
_GENERIC = frozenset("type types kind kinds sort form forms part parts name names group".split())
_AUX = frozenset("is are was were will would does do did has have had can could should be the a "
                 "an 's".split())
_END = frozenset("of for in on at to by from with does do did is was are were be been that "
                 "which who when where whose has have had can could will would should "
                 "than as about after before during".split())
_TOKEN = re.compile(r"[A-Za-z0-9][\w\'/.-]*[\w]|[A-Za-z0-9]")
_NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten eleven twelve thirteen "
                          "fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty "
                          "forty fifty sixty seventy eighty ninety hundred thousand million "
                          "billion dozen half single double twice once".split())
_DATE_WORDS = frozenset("january february march april may june july august september october "
                        "november december monday tuesday wednesday thursday friday saturday "
                        "sunday spring summer autumn fall winter century centuries decade "
                        "bc ad bce ce".split())


def words_of(text: str) -> list[str]:
    return [w[:-2] if w.lower().endswith("'s") else w for w in _TOKEN.findall(text)]


def head_phrase(question: str) -> tuple[str | None, list[str]]:
    """(expected answer type, focus words) of a question.

    The type is "number", "date" or "name" where the wh-phrase says so ("how many", "when",
    "who", "what year", "what is the price of ..."), else None. The focus is the noun phrase the
    question asks about ("interest rate" in "What interest rate does ..."), with generic heads
    ("type of", "name of") replaced by their complement.
    """
    words = [w.lower() for w in words_of(question)]
    if not words:
        return None, []
    wh = next((i for i, w in enumerate(words) if w in ("what", "which", "how", "who", "whom",
                                                         "whose", "when")), None)
    if wh is None:
        return None, []
    first = words[wh]
    rest = words[wh + 1:]
    if first in ("who", "whom", "whose"):
        return "name", []
    if first == "when":
        return "date", []
    kind: str | None = None
    if first == "how":
        if rest[:1] not in (["many"], ["much"]):  # how long/far/old ...: a measure, no focus noun
            return ("number" if rest[:1] and rest[0] in _MEASURES else None), []
        kind, rest = "number", rest[1:]  # "how much does ..." has no focus: stop at the verb
    else:
        while rest and rest[0] in _AUX:
            rest = rest[1:]
    phrase: list[str] = []
    for w in rest:
        if w in _END or w in _AUX or len(phrase) == 3:
            break
        phrase.append(w)
    if kind is None and phrase:
        head = phrase[-1]
        kind = ("number" if head in _QUANTITY else "date" if head in _DATE
                else "name" if head in ("name", "names", "called") else None)
    if phrase and phrase[-1] in _GENERIC:
        after = rest[len(phrase):]
        if after[:1] == ["of"]:
            phrase = []
            for w in after[1:]:
                if w in _END or w in _AUX:
                    if phrase:
                        break
                    continue
                phrase.append(w)
        else:
            phrase = phrase[:-1]
    return kind, [w for w in phrase if w not in _AUX]


def type_mismatch(question: str, answer: str) -> float:
    """1.0 when the question asks for a kind of thing (`asked_kind`) and the answer holds none."""
    return 1.0 if holds_kind(question, answer) is False else 0.0


# Finer answer types (Li & Roth's DESC:reason, NUM:money, and contact details): asked for by
# their own words, held by their own forms.
_MONEY_NOUNS = frozenset("cost costs price prices fee fees fare fares charge charges salary salaries "
                         "wage wages revenue revenues turnover budget income money funding profit "
                         "profits rent tax taxes fine fines".split())
_MONEY_VERBS = frozenset("cost costs charge charges charged pay pays paid earn earns earned spend "
                         "spends spent raise raised sell sold gross grossed worth".split())
_MONEY = re.compile(r"[£$€¥₹]|\b(?:pounds?|dollars?|euros?|pence|cents?|usd|gbp|eur|free|"
                    r"no charge|no cost|\d+p)\b", re.IGNORECASE)
_REASON = re.compile(r"\b(?:because|due to|owing to|as a result|result of|so that|in order to|"
                     r"so as to|since|reasons?|caused|after|following|to (?:avoid|reduce|prevent|"
                     r"improve|allow|enable|support|meet|comply|protect|keep|save|help|ensure|"
                     r"make|give|cut|lower|free))\b", re.IGNORECASE)
_PHONE = re.compile(r"\+?\(?\d[\d ().-]{5,}\d")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_WEB = re.compile(r"https?://|\bwww\.|\b[\w-]+\.(?:com|org|net|io|co|uk|gov|edu|ai|app)\b",
                  re.IGNORECASE)
_FINE = {"phone": _PHONE, "email": _EMAIL, "web": _WEB, "money": _MONEY, "reason": _REASON}
_FINE_NAMES = {"phone": "a telephone number", "email": "an email address", "web": "a web address",
               "money": "an amount of money", "reason": "a reason"}


def asked_kind(question: str) -> str | None:
    """What kind of thing `question` asks for: a reason ("why"), a telephone number, an email
    or web address, an amount of money ("how much does it cost", "what is the fee"), else
    `head_phrase`'s number, date or name; None for no particular kind."""
    lower = [w.lower() for w in words_of(question)]
    if not lower:
        return None
    kind, focus = head_phrase(question)
    if "why" in lower[:3] or lower[:4] == ["for", "what", "reason"] or focus[-1:] == ["reason"]:
        return "reason"
    joined = " ".join(lower)
    if re.search(r"\b(?:tele)?phone numbers?\b|\bnumber to (?:call|ring)\b", joined):
        return "phone"
    if {"email", "e-mail"} & set(lower) and "address" in lower or focus[-1:] == ["email"]:
        return "email"
    if {"website", "url"} & set(lower) or "web address" in joined:
        return "web"
    if kind == "number" and focus[-1:] and focus[-1] in _MONEY_NOUNS:
        return "money"
    much = next((i for i in range(len(lower) - 2) if lower[i:i + 2] == ["how", "much"]), None)
    if much is not None:  # "how much did it cost" asks for money; "how much paid leave", not
        after = lower[much + 2]
        if after in _MONEY_NOUNS or after in _AUX and _MONEY_VERBS & set(lower[much + 3:]):
            return "money"
    return kind


def missing_kind(question: str, answer: str) -> str | None:
    """What `question` asks for, in words, when it is one of the finer kinds (a reason, a
    telephone number, an email or web address, an amount of money) and `answer` holds none of it;
    else None. Such an answer answers another question: the answerability check refuses it."""
    kind = asked_kind(question)
    if kind not in _FINE or _FINE[kind].search(MARKER.sub(" ", answer)) is not None:
        return None
    return _FINE_NAMES[kind]


_GENERIC_COUNTS = frozenset("people persons person times ones individuals things items".split())


def counted(question: str) -> list[str]:
    """What a "how many" question counts: the words after "how many" up to the verb (at most
    three; "desks" in "How many desks are there ..."); none for a generic count ("how many
    people", "how many times"), which any number may answer."""
    lower = [w.lower() for w in words_of(question)]
    at = next((i for i in range(len(lower) - 1) if lower[i:i + 2] == ["how", "many"]), None)
    if at is None:
        return []
    words: list[str] = []
    for w in lower[at + 2:]:
        if w in _END or w in _AUX or len(words) == 3:
            break
        words.append(w)
    return [] if not words or words[0] in _GENERIC_COUNTS else words


def missing_counted(question: str, answer: str) -> str | None:
    """What a "how many" question counts, when `answer` names none of it ("How many staff ...?"
    answered with a line that counts desks); else None. Plural -s and hyphens are read through
    ("28-bed" counts beds)."""
    wanted = counted(question)
    if not wanted:
        return None
    held = {stem(part) for w in words_of(MARKER.sub(" ", answer))
            for part in re.split(r"[-/]", w.lower()) if part}
    return None if any(stem(w) in held for w in wanted) else " ".join(wanted)


# a year (not the digits after a thousands comma, a decimal point or a version's dot) or a
# numeric date (12/03, 12/03/2024, 2024-03-12, 12.03.2024)
_YEAR = re.compile(r"(?<![\d,.])\d{3,4}s?(?!\d|,\d{3}|\.\d)")
_NUMERIC_DATE = re.compile(r"\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b|\b\d{4}-\d{2}(?:-\d{2})?\b|"
                           r"\b\d{1,2}\.\d{1,2}\.\d{2,4}\b")
_CLOCK = re.compile(r"\b\d{1,2}[:.]\d{2}\b|\b\d{1,2}\s?[ap]\.?m\b", re.IGNORECASE)
_RELATIVE = re.compile(r"\b(?:after|within|before|until|by|in)\s+(?:\d[\d,.]*|[a-z]+)\s+"
                       r"(?:working\s+)?(?:minute|hour|day|week|month|year)s?\b", re.IGNORECASE)


def holds_kind(question: str, text: str) -> bool | None:
    """Whether `text` holds the kind of thing `question` asks for (a number, a date or time, a
    name); None when the question asks for no particular kind."""
    kind = asked_kind(question)
    if kind is None:
        return None
    text = MARKER.sub(" ", text)
    if kind in _FINE:
        return _FINE[kind].search(text) is not None
    words = words_of(text)
    lower = [w.lower() for w in words]
    if kind == "number":
        return any(any(c.isdigit() for c in w) for w in words) \
            or any(part in _NUMBER_WORDS for w in lower for part in w.split("-"))
    if kind == "date":  # a date, a clock time, or a time relative to an event ("after 90 days")
        return _YEAR.search(text) is not None or _NUMERIC_DATE.search(text) is not None \
            or any(re.fullmatch(r"\d{1,2}(st|nd|rd|th)", w) for w in lower) \
            or any(w in _DATE_WORDS for w in lower) \
            or _CLOCK.search(text) is not None or _RELATIVE.search(text) is not None
    asked = {w.lower() for w in words_of(question)}
    return any(w[0].isupper() and w.lower() not in asked and w.lower() not in STOPWORDS
               for w in words[1:])


STOPWORDS = frozenset("the a an this that these those it its in on at of for and or but if "
                       "when where while with by from as".split())
