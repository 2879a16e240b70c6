"""The soak's closing checks (bench.soak): documents against what the clients sent, the collection's
counts against its docstore and vector index, and the figures printed with their bounds."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any


def all_documents(load: Any, name: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    while True:
        r = load.call("check", "GET", f"/v1/collections/{name}/documents?limit=1000&offset={len(docs)}")
        if r is None or r.status_code != 200:
            raise RuntimeError(f"could not list the documents: {r and r.text}")
        page = r.json()["documents"]
        docs += page
        if len(page) < 1000:
            return docs


def chunk_problems(load: Any, name: str, upload: Any, doc: dict[str, Any]) -> list[str]:
    """What is wrong with one stored document: its chunks (all found by a search limited to it,
    together holding every marker that was sent) and a keyword search for one of its markers."""
    if doc["n_chunks"] < 1:
        return ["no chunks"]
    r = load.call("check", "POST", f"/v1/collections/{name}/search",
                  json={"query": upload.markers[0], "k": 100, "mode": "dense",
                        "filter": {"doc_id": doc["doc_id"]}})
    if r is None or r.status_code != 200:
        return [f"search failed: {r and r.status_code}"]
    hits = r.json()["hits"]
    problems = []
    if len({h["chunk_id"] for h in hits}) != doc["n_chunks"]:
        problems.append(f"{len(hits)} chunks in the index, {doc['n_chunks']} recorded")
    text = " ".join(h["text"] for h in hits)
    missing = [m for m in upload.markers if m not in text]
    if missing:
        problems.append(f"{len(missing)} of {len(upload.markers)} sent passages missing ({missing[0]})")
    marker = upload.markers[-1]
    r = load.call("check", "POST", f"/v1/collections/{name}/search",
                  json={"query": marker, "k": 5, "mode": "keyword"})
    if r is None or r.status_code != 200 or doc["doc_id"] not in {h["doc_id"] for h in r.json()["hits"]}:
        problems.append(f"a keyword search for {marker} does not find it")
    return problems


def check_documents(load: Any, name: str) -> dict[str, Any]:
    """Every upload the server accepted is one complete document; one cut by a kill is complete or
    absent; the collection's counts are those of its documents."""
    docs = all_documents(load, name)
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in docs:
        by_source[Path(d["source"]).name].append(d)
    out: dict[str, Any] = {"accepted": 0, "checked": 0, "lost": [], "half": [], "duplicated": [],
                           "cut_present": 0, "cut_absent": 0, "job_states": defaultdict(int)}
    for up in load.uploads:
        found = by_source.get(up.name, [])
        out["accepted"] += up.accepted
        if up.accepted:
            out["job_states"][str(up.job_state)] += 1
        if len(found) > 1:
            out["duplicated"].append({"name": up.name, "copies": len(found)})
        if not found:
            if up.accepted:
                out["lost"].append({"name": up.name, "job": up.job_id, "job_state": up.job_state})
            else:
                out["cut_absent"] += 1
            continue
        out["checked"] += 1
        out["cut_present"] += not up.accepted
        problems = chunk_problems(load, name, up, found[0])
        if problems:
            out["half"].append({"name": up.name, "doc_id": found[0]["doc_id"], "problems": problems})
    r = load.call("check", "GET", f"/v1/collections/{name}")
    stats = r.json() if r is not None and r.status_code == 200 else {}
    out["collection"] = {"documents": stats.get("documents"), "chunks": stats.get("chunks"),
                         "listed_documents": len(docs), "listed_chunks": sum(d["n_chunks"] for d in docs)}
    out["job_states"] = dict(out["job_states"])
    return out


def check_index(data_dir: Path, name: str) -> dict[str, Any]:
    """After the final clean shutdown: the vector index file against the docstore (the truth)."""
    import json

    import numpy as np

    from retrieval.collection import CollectionConfig
    from retrieval.docstore import Docstore
    from retrieval.index import backend

    root = data_dir / "collections" / name
    config = CollectionConfig(**json.loads((root / "collection.json").read_text()))
    store = Docstore(root / "docstore.sqlite")
    try:
        truth = store.chunk_ids()
        documents, chunks = store.counts()
    finally:
        store.close()
    impl = backend(config.index_type)
    ids = impl.load(root / impl.file_name, config.dim, use_gpu=False).ids()
    return {"docstore_documents": documents, "docstore_chunks": chunks, "index_ids": int(len(ids)),
            "missing_from_index": int(len(np.setdiff1d(truth, ids))),
            "extra_in_index": int(len(np.setdiff1d(ids, truth)))}


def summary_lines(r: dict[str, Any]) -> tuple[list[str], bool]:
    """The closing note's figures, each with its bound; and whether every bound held."""
    req = r["requests"]
    docs, index, coll = r["documents"], r["index"], r["documents"]["collection"]
    counts_match = (coll["documents"] == coll["listed_documents"] == index["docstore_documents"]
                    and coll["chunks"] == coll["listed_chunks"] == index["docstore_chunks"]
                    and index["missing_from_index"] == index["extra_in_index"] == 0)
    load_kinds = [k for k in req if k not in ("settle", "check", "setup")]
    unfinished = r["tuning_jobs"].get("queued", 0) + r["tuning_jobs"].get("running", 0)
    lines = [
        f"soak: {r['load_seconds'] / 60:.1f} min of load, seed {r['seed']}, {r['clients']} clients, "
        f"data dir {r['data_dir']}",
        "requests: " + ", ".join(f"{k} {req[k]}" for k in sorted(load_kinds))
        + f"; total {sum(req[k] for k in load_kinds)} (+{sum(req.values()) - sum(req[k] for k in load_kinds)}"
        " setup/settle/check)",
        f"server errors (HTTP 5xx): {len(r['server_errors'])} (bound 0)",
        f"connection errors: {r['expected_connection_errors']} while the server was down (expected), "
        f"{len(r['other_connection_errors'])} otherwise (bound 0); client timeouts "
        f"{len(r['timeouts'])}; unexpected 4xx {len(r['unexpected_4xx'])}",
        f"kills survived: {len(r['kills'])} (back to healthy after "
        + ", ".join(f"{k['back_after_s']:.0f}" for k in r["kills"]) + " s)",
        f"documents: {docs['accepted']} accepted (jobs {docs['job_states']}), {docs['checked']} checked, "
        f"{len(docs['lost'])} lost, {len(docs['half'])} half, {len(docs['duplicated'])} duplicated "
        f"(bound 0 / 0 / 0); uploads cut by a kill: {docs['cut_present']} present and complete, "
        f"{docs['cut_absent']} absent",
        f"collection: {coll['documents']} documents / {coll['chunks']} chunks over HTTP; listed "
        f"{coll['listed_documents']} / {coll['listed_chunks']}; docstore {index['docstore_documents']} / "
        f"{index['docstore_chunks']}; index at shutdown {index['index_ids']} ids, "
        f"{index['missing_from_index']} missing, {index['extra_in_index']} extra: "
        f"{'match' if counts_match else 'MISMATCH'}",
        f"tuning jobs (submitted, then cancelled): {r['tuning_jobs']}, {unfinished} left queued or "
        f"running (bound 0)",
        f"final shutdown (SIGTERM): {'clean' if r['clean_shutdown'] else 'NOT CLEAN'}",
        f"RSS per life, first sample after warm-up -> last (bound growth < {r['bounds']['rss_growth']:.0%}):",
    ]
    rss_ok = True
    for life in r["lives"]:
        span = life["rss_span_kb"]
        if span is None:
            lines.append(f"  life {life['number']} ({life['end']}): not warmed up before its end")
            continue
        growth = span[1] / span[0] - 1
        rss_ok &= growth < r["bounds"]["rss_growth"]
        lines.append(f"  life {life['number']} ({life['end']}): {span[0] / 1024:.0f} MiB -> "
                     f"{span[1] / 1024:.0f} MiB ({growth:+.1%})")
    ok = (not r["server_errors"] and not r["other_connection_errors"] and not docs["lost"]
          and not docs["half"] and not docs["duplicated"] and counts_match and rss_ok
          and not unfinished and r["clean_shutdown"])
    lines.append(f"within bounds: {ok}")
    return lines, ok
