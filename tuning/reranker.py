"""Training data and training for a search reranker (retrieval/rerank.py): a cross-encoder made from
the packaged all-MiniLM-L6-v2 weights.

Pairs (query, passage, label), two sources:

- SciFact train queries (BEIR qrels): for each query, the best-ranked chunk of each relevant
  document in the first stage's top `pos_depth` as a positive, and `negatives` chunks of other
  documents drawn from the first stage's top `neg_depth` as hard negatives (what the reranker
  will have to push down when it serves). A share of the train queries (`dev_share`, chosen by a
  hash of the query id) is held out: the mixing weight and top-n are tuned on it, never on test.
- SQuAD "train"-split articles (tuning/squad.py `split_of`): a question, its paragraph as a
  positive, and the `squad_negatives` other paragraphs of the same article sharing most words with
  it as hard negatives.

`train_reranker` fits them with the answer verifier's trainer (tuning/verifier.py: LoRA and a
one-logit head, BCE, length-bucketed batches), merges the adapter into the weights and saves a
plain sentence-transformers CrossEncoder directory with `reranker.json` (the record).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.evaluation import beir_doc_key, load_qrels, load_queries
from retrieval.metrics import dedupe_ranking, ndcg_at_k
from retrieval.rerank import RECORD, CrossEncoderReranker, Reranker, mix
from retrieval.types import Hit

from .squad import Article, load_squad, split_of
from .verifier import Pair, VerifierTraining, train_verifier

__all__ = ["RerankerData", "dev_split", "fit_reranker", "merge_adapter", "scifact_pairs",
           "squad_pairs", "sweep", "train_reranker"]

Search = Callable[[str, int], list[Hit]]
"""A query and a depth -> the first stage's hits, best first (the collection's hybrid search)."""
DocKey = Callable[[Hit], str]
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("the a an of in on at to for by with from and or is are was were be what which who "
                  "when where why how did does do that this it its as".split())


@dataclass(frozen=True)
class RerankerData:
    dev_share: float = 0.2
    """share of SciFact train queries held out to tune the mixing weight and top-n"""
    negatives: int = 7
    """hard negatives per SciFact query"""
    neg_depth: int = 30
    """negatives are drawn from the first stage's top this many chunks"""
    pos_depth: int = 100
    """a relevant document is a positive where one of its chunks is in the top this many"""
    squad_questions: int = 3000
    """SQuAD questions used (from "train"-split articles)"""
    squad_negatives: int = 3
    """other paragraphs of the article per SQuAD question"""
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.dev_share < 1.0:
            raise ValueError(f"dev_share {self.dev_share!r} must be in [0, 1)")
        if self.neg_depth > self.pos_depth:
            raise ValueError(f"neg_depth {self.neg_depth!r} must be <= pos_depth {self.pos_depth!r}")


def dev_split(query_ids: Sequence[str], share: float) -> tuple[list[str], list[str]]:
    """(train, dev) query ids: a query is dev when the sha1 of its id falls under `share`."""
    def u(q: str) -> float:
        return int(hashlib.sha1(q.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    return [q for q in query_ids if u(q) >= share], [q for q in query_ids if u(q) < share]


def scifact_pairs(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
                  search: Search, key: DocKey, data: RerankerData,
                  rng: random.Random) -> list[Pair]:
    pairs: list[Pair] = []
    for qid, text in queries.items():
        relevant = {d for d, r in qrels.get(qid, {}).items() if r > 0}
        hits = search(text, data.pos_depth)
        seen: set[str] = set()
        for h in hits:
            doc = key(h)
            if doc in relevant and doc not in seen:
                seen.add(doc)
                pairs.append(Pair(text, h.text, 1, "scifact_pos"))
        if not seen:
            continue
        pool = [h for h in hits[:data.neg_depth] if key(h) not in relevant]
        for h in rng.sample(pool, min(data.negatives, len(pool))):
            pairs.append(Pair(text, h.text, 0, "scifact_neg"))
    return pairs


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def squad_pairs(articles: Sequence[Article], data: RerankerData, rng: random.Random) -> list[Pair]:
    """Question / paragraph pairs from "train"-split articles of more than one paragraph."""
    items = [(a, i, q) for a in articles if split_of(a.title) == "train" and len(a.paragraphs) > 1
             for i, p in enumerate(a.paragraphs) for q in p.questions if q.answerable]
    pairs: list[Pair] = []
    for article, i, q in rng.sample(items, min(data.squad_questions, len(items))):
        pairs.append(Pair(q.question, article.paragraphs[i].context, 1, "squad_pos"))
        wanted = _words(q.question)
        others = sorted((p.context for j, p in enumerate(article.paragraphs) if j != i),
                        key=lambda c: -(len(wanted & _words(c)) + rng.random()))
        pairs += [Pair(q.question, c, 0, "squad_neg") for c in others[:data.squad_negatives]]
    return pairs


def train_reranker(base: str, pairs: Sequence[Pair], out_dir: Path, cfg: VerifierTraining,
                   record: dict[str, Any],
                   progress: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Fit a LoRA adapter and head on `pairs` (tuning/verifier.py `train_verifier`), merge it into
    `base`'s weights and save a CrossEncoder directory at `out_dir` with `reranker.json`."""
    work = out_dir.with_name(out_dir.name + ".adapter")
    full = train_verifier(base, pairs, work, cfg, record, progress)
    merge_adapter(base, work, out_dir)
    shutil.rmtree(work)
    full.pop("base", None)
    write_record(out_dir, {"base_model": record.get("base", base), **full})
    return full


def merge_adapter(base: str, adapter_dir: Path, out_dir: Path) -> None:
    """`base` as a one-logit sequence classifier with the LoRA adapter (and head) at `adapter_dir`
    folded in, saved with its tokenizer as a plain directory (a CrossEncoder, or a base to train
    on: `--init verifier` starts from the answer verifier this way)."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(base).save_pretrained(str(out_dir))


@contextmanager
def starting_model(init: str, scratch: Path) -> Iterator[str]:
    """The model a reranker starts from: the packaged MiniLM (`packaged`), or it with the answer
    verifier's LoRA merged in (`verifier`), written to `scratch` and removed afterwards."""
    from retrieval.embedder import packaged_model_dir

    base = str(packaged_model_dir())
    if init != "verifier":
        yield base
        return
    from generation.verifier import DEFAULT_VERIFIER

    merge_adapter(base, DEFAULT_VERIFIER, scratch)
    try:
        yield str(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_record(model_dir: Path, record: dict[str, Any]) -> None:
    (model_dir / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def ndcg_after(hits: Sequence[Hit], scores: Sequence[float], relevant: Mapping[str, int],
               key: DocKey, top_n: int, weight: float) -> float:
    """nDCG@10 of documents (each at its best chunk) after reordering the top `top_n` hits by
    `mix(scores[:top_n], weight)`."""
    n = min(top_n, len(hits))
    mixed = mix(scores[:n], weight)
    head = [hits[i] for i in sorted(range(n), key=lambda i: -mixed[i])]
    ranked = dedupe_ranking([key(h) for h in head + list(hits[n:])])
    return ndcg_at_k(ranked, relevant, 10)


def sweep(runs: Sequence[tuple[list[Hit], list[float], Mapping[str, int]]], key: DocKey,
          top_ns: Sequence[int], weights: Sequence[float]) -> dict[tuple[int, float], float]:
    """Mean nDCG@10 over `runs` (hits, their reranker scores, the query's qrels) for each
    (top_n, weight)."""
    return {(n, w): sum(ndcg_after(h, s, r, key, n, w) for h, s, r in runs) / max(1, len(runs))
            for n in top_ns for w in weights}


TOP_NS = (10, 20, 30)
WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


def dev_runs(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], search: Search,
             reranker: Reranker, depth: int) -> list[tuple[list[Hit], list[float], Mapping[str, int]]]:
    """Per query: the first stage's top `depth` hits, the reranker's scores of them, its qrels."""
    runs = []
    for qid, text in queries.items():
        hits = search(text, depth)
        runs.append((hits, reranker.score(text, [h.text for h in hits]), qrels.get(qid, {})))
    return runs


def fit_reranker(scifact: Path, squad: Path | None, search: Search, base: str, out_dir: Path,
                 data: RerankerData, cfg: VerifierTraining,
                 progress: Callable[[str], None] = print,
                 base_name: str | None = None) -> dict[str, Any]:
    """The whole recipe: pairs from SciFact's train queries (less the dev share) and SQuAD, a
    trained CrossEncoder at `out_dir`, then the top-n and mixing weight that give the best mean
    nDCG@10 on the dev queries, written into its `reranker.json` with the dev table. `base_name`:
    how the record names `base` (default: its path)."""
    rng = random.Random(data.seed)
    qrels = load_qrels(scifact / "qrels" / "train.tsv")
    queries = {q: t for q, t in load_queries(scifact / "queries.jsonl").items() if q in qrels}
    train_ids, dev_ids = dev_split(sorted(queries), data.dev_share)
    pairs = scifact_pairs({q: queries[q] for q in train_ids}, qrels, search, beir_doc_key, data, rng)
    progress(f"SciFact: {len(train_ids)} train queries, {len(dev_ids)} dev; {len(pairs)} pairs")
    if squad is not None:
        more = squad_pairs(load_squad(squad), data, rng)
        progress(f"SQuAD: {len(more)} pairs")
        pairs += more
    rng.shuffle(pairs)
    every = max(1, cfg.steps // 20)

    def step(n: int, loss: float) -> None:
        if n % every == 0 or n == cfg.steps:
            progress(f"step {n}/{cfg.steps} loss {loss:.4f}")

    record = {"base": base_name or base, "data": {**data.__dict__, "scifact_train_queries": len(train_ids),
                                     "scifact_dev_queries": len(dev_ids)}}
    full = train_reranker(base, pairs, out_dir, cfg, record, step)
    dev = {q: queries[q] for q in dev_ids}
    if dev:
        table = sweep(dev_runs(dev, qrels, search, CrossEncoderReranker(out_dir), max(TOP_NS)),
                      beir_doc_key, TOP_NS, WEIGHTS)
        (top_n, weight), best = max(table.items(), key=lambda kv: (kv[1], -kv[0][0]))
        full = {**full, "top_n": top_n, "weight": weight, "dev_ndcg10": round(best, 4),
                "dev_ndcg10_first_stage": round(table[(top_n, 0.0)], 4),
                "dev_table": {f"top{n}_w{w}": round(v, 4) for (n, w), v in table.items()}}
        progress(f"dev nDCG@10 {table[(top_n, 0.0)]:.4f} -> {best:.4f} (top_n {top_n}, "
                 f"weight {weight})")
        write_record(out_dir, {"base_model": record["base"], **full})
    return full
