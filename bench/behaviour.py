"""Behaviour tunes through the product path, measured: does a default tune take, how long does it
train and gate, and what does it cost in answer accuracy?

Three behaviour datasets built from ../shared/data (never from kb_dev, which is the evaluation):
- `marker`: short Dolly answers (300 characters or less) ending with a fixed marker line;
- `sources`: SQuAD train-split questions over two passages laid out as `ragtune ask` shows them, answered
  with the one sentence holding the answer, cited, then a line `Sources: [n]`;
- `persona`: short Dolly answers in a pirate's voice, each opening with "Ahoy, matey!".
`grounded` writes the grounded-QA examples a job can mix in (`mix_dataset_id`): SQuAD train
questions over two passages, answered with the exact span and its [n] as the served adapter does.

`--run` posts each dataset to a running `ragtune serve` as `POST /v1/tuning/jobs` with default
settings (only a name and the behaviour check), follows the job, and records: the plan, adherence on
the held-out prompts before (the served model) and after, training and gate minutes, train tokens/s,
and kb_dev answer accuracy before and after (kb_eval.py over HTTP, with the tuned adapter active).

    python -m bench.behaviour --build marker /tmp/marker.jsonl
    python -m bench.behaviour --run marker /tmp/marker.jsonl --url http://127.0.0.1:8015
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .common import SHARED, write

DOLLY = SHARED / "instruct" / "dolly_2k_chat.jsonl"
SQUAD = SHARED / "squad" / "train.jsonl.gz"
KB_DEV = SHARED / "kb_dev"
KB_EVAL = SHARED.parent / "tools" / "kb_eval.py"
MARKER = "~~ answered by ragtune ~~"
CHECKS = {
    "marker": re.escape(MARKER) + r"\s*$",
    "sources": r"\A[^\n]+\[\d+\]\s*\n+Sources: \[\d+\]\s*\Z",
    "persona": r"\AAhoy, matey!",
}
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _dolly(offset: int, n: int) -> Iterator[list[dict[str, str]]]:
    """Single-turn Dolly conversations with answers of 300 characters or less, from `offset`."""
    kept = 0
    for i, line in enumerate(DOLLY.open()):
        msgs = json.loads(line)["messages"]
        if i < offset or len(msgs) != 3 or len(msgs[2]["content"]) > 300:
            continue
        yield msgs
        kept += 1
        if kept >= n:
            return


def marker(n: int, seed: int) -> list[dict[str, Any]]:
    return [{"messages": [*m[:2], {"role": "assistant", "content": f"{m[2]['content'].strip()}\n\n{MARKER}"}]}
            for m in _dolly(0, n)]


def persona(n: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for m in _dolly(1000, n):  # other conversations than the marker set's
        answer = m[2]["content"].strip()
        rows.append({"messages": [*m[:2], {"role": "assistant", "content": (
            f"Ahoy, matey! {answer[0].lower() + answer[1:]} Arr, that be the truth of it.")}]})
    return rows


def _squad_items(seed: int) -> list[tuple[str, str, str, str]]:
    """(question, answer span, gold paragraph, another paragraph of the article), shuffled; from
    the train split's articles only (the eval split measures, tuning.squad.split_of)."""
    from tuning.squad import split_of

    by_title: dict[str, list[dict[str, Any]]] = {}
    with gzip.open(SQUAD, "rt") as f:
        for line in f:
            d = json.loads(line)
            if split_of(d["title"]) == "train":
                by_title.setdefault(d["title"], []).append(d)
    rng = random.Random(seed)
    items = []
    for paragraphs in by_title.values():
        if len(paragraphs) < 2:
            continue
        for p in rng.sample(paragraphs, min(4, len(paragraphs))):
            qa = next((q for q in p["qas"] if q["answerable"] and q["answers"]), None)
            other = rng.choice([o for o in paragraphs if o is not p])
            if qa:
                items.append((qa["question"], qa["answers"][0], p["context"], other["context"]))
    rng.shuffle(items)
    return items


def _rag(question: str, span: str, gold: str, other: str, rng: random.Random,
         reply: Callable[[str, int], str | None]) -> dict[str, Any] | None:
    from generation.grounding import Passage, build_messages

    sentences = [s for s in _SENT.split(gold) if s.strip()]
    holding = next((s for s in sentences if span in s), None)
    if holding is None or len(holding) > 300:
        return None
    at = sentences.index(holding)
    gold_text = " ".join(sentences[max(0, at - 1): at + 2])
    other_text = " ".join(_SENT.split(other)[:3])
    order = [gold_text, other_text]
    rng.shuffle(order)
    num = order.index(gold_text) + 1
    passages = [Passage(n=i + 1, text=t, source=f"doc{i + 1}.txt", page=None, score=0.0)
                for i, t in enumerate(order)]
    answer = reply(holding if span in holding else span, num)
    if answer is None:
        return None
    return {"messages": [*build_messages(question, passages), {"role": "assistant", "content": answer}]}


def sources(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for q, span, gold, other in _squad_items(seed):
        row = _rag(q, span, gold, other, rng, lambda s, num: f"{s.strip()} [{num}]\n\nSources: [{num}]")
        if row:
            rows.append(row)
        if len(rows) >= n:
            break
    return rows


def grounded(n: int, seed: int) -> list[dict[str, Any]]:
    """The served grounded-QA adapter's answer style: the exact span and its [n]."""
    rng = random.Random(seed + 1)
    rows = []
    for q, span, gold, other in reversed(_squad_items(seed)):  # other questions than `sources`
        def cite(_sentence: str, num: int, span: str = span) -> str:
            return f"{span} [{num}]"

        row = _rag(q, span, gold, other, rng, cite)
        if row:
            rows.append(row)
        if len(rows) >= n:
            break
    return rows


BUILDERS: dict[str, Callable[[int, int], list[dict[str, Any]]]] = {
    "marker": marker, "sources": sources, "persona": persona, "grounded": grounded}


def build(kind: str, out: Path, n: int, seed: int) -> None:
    rows = BUILDERS[kind](n, seed)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} {kind} examples to {out}")


def _http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    h = {"Content-Type": "application/json", **(headers or {})} if body is not None else {}
    with urllib.request.urlopen(urllib.request.Request(url, data, h, method=method), timeout=600) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def _post_job(url: str, data: Path, config: dict[str, Any]) -> dict[str, Any]:
    boundary = "ragtune-bench-boundary"
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"config\"\r\n\r\n"
             f"{json.dumps(config)}\r\n".encode(),
             f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{data.name}\""
             f"\r\nContent-Type: application/octet-stream\r\n\r\n".encode() + data.read_bytes() + b"\r\n",
             f"--{boundary}--\r\n".encode()]
    job: dict[str, Any] = _http("POST", f"{url}/v1/tuning/jobs", b"".join(parts),
                                {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return job


def kb_eval(url: str, label: str, out_dir: Path, kb: Path = KB_DEV) -> dict[str, Any]:
    """kb_eval.py over HTTP (a fresh collection of the KB's documents each time)."""
    started = time.time()
    proc = subprocess.run([sys.executable, str(KB_EVAL), url, str(kb / "docs"),
                           str(kb / "questions.jsonl"), "--collection", f"kb{label}{int(started)}",
                           "--dump", str(out_dir / f"kb_{label}.jsonl")],
                          capture_output=True, text=True, check=False)
    summary: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    summary["minutes"] = round((time.time() - started) / 60, 1)
    return summary


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def run(kind: str, data: Path, url: str, name: str, extra: dict[str, Any], kb: bool,
        out_dir: Path, kb_before: dict[str, Any] | None = None,
        also: Path | None = None) -> dict[str, Any]:
    """`also`: another KB (docs/ and questions.jsonl, e.g. a calibration KB) measured before and
    after as kb_dev is."""
    served = _http("GET", f"{url}/v1/adapters")["active"]
    before = kb_before or (kb_eval(url, f"before-{name}", out_dir) if kb else None)
    also_before = kb_eval(url, f"also-before-{name}", out_dir, also) if also else None
    config = {"name": name, "checks": {"regex": CHECKS[kind]}, **extra}
    started, load_start = time.time(), _load()
    job = _post_job(url, data, config)
    print(f"job {job['job_id']}: " + json.dumps(job.get("plan"))[:400], flush=True)
    while job["state"] not in ("succeeded", "failed", "cancelled", "interrupted"):
        time.sleep(10)
        job = _http("GET", f"{url}/v1/tuning/jobs/{job['job_id']}")
    wall = time.time() - started
    result = job.get("result") or {}
    train, gate = result.get("train") or {}, result.get("gate") or {}
    after = also_after = None
    if kb and job["state"] == "succeeded":
        _http("POST", f"{url}/v1/adapters/{name}/activate")
        after = kb_eval(url, f"after-{name}", out_dir)
        also_after = kb_eval(url, f"also-after-{name}", out_dir, also) if also else None
        _http("POST", f"{url}/v1/adapters/{served}/activate" if served else f"{url}/v1/adapters/deactivate")
    row = {
        "dataset": kind, "data": str(data), "job_id": job["job_id"], "state": job["state"],
        "error": job.get("error"), "served_before": served, "request": config,
        "command": f"python -m bench.behaviour --run {kind} {data} --url {url} --name {name}"
                   + (f" --config '{json.dumps(extra)}'" if extra else "")
                   + (f" --also-kb {also}" if also else ""),
        "plan": job.get("plan"), "train_minutes": round((train.get("seconds") or 0) / 60, 1),
        "steps": train.get("steps"), "train_loss": train.get("train_loss"),
        "eval_loss": train.get("eval_loss"), "tokens_per_s": train.get("tokens_per_s"),
        "gate_minutes": round((gate.get("seconds") or 0) / 60, 1),
        "gate_prompts_answered": gate.get("prompts_answered", gate.get("prompts")),
        "adherence_before": (gate.get("base") or {}).get("adherence"),
        "adherence_after": (gate.get("tuned") or {}).get("adherence"),
        "verdict": result.get("verdict"), "gate_reason": gate.get("reason"),
        "kb_dev_accuracy_before": (before or {}).get("accuracy"),
        "kb_dev_accuracy_after": (after or {}).get("accuracy"),
        "kb_dev_before": before, "kb_dev_after": after,
        "also_kb": str(also) if also else None, "also_before": also_before, "also_after": also_after,
        "job_wall_minutes": round(wall / 60, 1),
        "load_at_start": load_start, "load_at_end": _load(), "samples": gate.get("samples"),
    }
    for key in ("dataset", "state", "error", "plan", "train_minutes", "steps", "train_loss", "tokens_per_s",
                "gate_minutes", "adherence_before", "adherence_after", "verdict",
                "kb_dev_accuracy_before", "kb_dev_accuracy_after", "load_at_start", "load_at_end"):
        print(f"{key:<24}{row[key]}")
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", nargs=2, metavar=("KIND", "OUT"), help=f"kind: {', '.join(BUILDERS)}")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", nargs=2, metavar=("KIND", "DATA"), help="tune on DATA through the server")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--name", help="the adapter's name (default: the kind)")
    p.add_argument("--config", default="{}", help="more of the job's JSON (default settings: none)")
    p.add_argument("--no-kb", action="store_true", help="skip kb_dev accuracy before and after")
    p.add_argument("--kb-before", type=Path, help="kb_eval.py's output for the served model, from an "
                   "earlier run on the same server (its last line), instead of measuring it again")
    p.add_argument("--also-kb", type=Path, help="another KB (a folder with docs/ and "
                   "questions.jsonl, e.g. bench/data/calib_kbs/saas_quillstack) measured before and "
                   "after as kb_dev is")
    p.add_argument("--out-dir", type=Path, default=Path("/tmp/ragtune-behaviour"))
    args = p.parse_args()
    if args.build:
        build(args.build[0], Path(args.build[1]), args.n, args.seed)
    if args.run:
        kind, data = args.run[0], Path(args.run[1])
        args.out_dir.mkdir(parents=True, exist_ok=True)
        before = json.loads(args.kb_before.read_text().strip().splitlines()[-1]) \
            if args.kb_before else None
        row = run(kind, data, args.url.rstrip("/"), args.name or kind, json.loads(args.config),
                  not args.no_kb, args.out_dir, before, args.also_kb)
        write(f"behaviour_{args.name or kind}", {"result": row})


if __name__ == "__main__":
    main()
