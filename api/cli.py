"""The `ragtune` command line: serve, collections, ingest, search, models, adapters, tune, classifiers.

Domain errors are translated here, once, into a message on stderr and an exit code (1: the work
partly failed, 2: bad input or a refusal by the server, 3: the named server does not answer).
`search`, `ask`, `ingest` and some `tune` and `eval` commands use a running server when one answers
(api/cli_remote.py) and print the same text and JSON either way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cluster.errors import ClusterError
from generation.errors import GenerationError
from ingest.errors import IngestError
from retrieval.errors import RetrievalError
from tuning.errors import TuningError

from .cli_remote import ServerUnreachable, add_server_options, connect, error_message
from .cli_services import open_corpus
from .cli_services import open_services as _services
from .client import RagtuneError
from .guard import is_loopback
from .keys import KeyStore
from .schemas import AskResponse, HitOut
from .settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from .app import create_app
    from .logs import configure as configure_logs

    settings = settings.model_copy(update={"host": args.host or settings.host,
                                           "port": args.port or settings.port,
                                           "cluster": args.cluster or settings.cluster})
    Settings.model_validate(settings.model_dump())
    if not is_loopback(settings.host) and not KeyStore.in_data_dir(settings.data_dir).active():
        raise ValueError(f"RAGTUNE_HOST={settings.host} reaches beyond this machine: create an API "
                         "key first (`ragtune keys create --name admin --scope admin`); every "
                         "request then needs one")
    configure_logs(settings.log_format)
    if settings.cluster:  # tuning jobs then train on it too (the worker reads the settings)
        from . import cluster as on_cluster

        on_cluster.serve_forever(settings, settings.cluster, args.replicas or settings.serve_replicas)
        return 0
    # uvicorn's logging setup and access log give way to ours: JSON lines with the request id
    # (api/logs.py), one access line per request (api/telemetry.py)
    # a client left following a stream (tuning logs, an answer) must not hold a shutdown for ever
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                log_config=None, access_log=False, timeout_graceful_shutdown=5)
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    client = connect(args, settings)
    if client is not None:
        flt = {k: v for k, v in (("source", args.source), ("doc_id", args.doc_id)) if v}
        hits = client.search(args.collection, args.query, args.k, args.mode, flt or None,
                             rerank=args.rerank)
    else:
        from retrieval.types import SearchFilter

        svc = open_corpus(settings)
        found = svc.search(args.collection, args.query, args.k,
                           SearchFilter(source=args.source, doc_id=args.doc_id), mode=args.mode,
                           rerank=args.rerank)
        hits = [HitOut(**h.__dict__) for h in found]
    if args.json:
        print(json.dumps({"hits": [h.model_dump() for h in hits]}, indent=2))
        return 0
    for i, h in enumerate(hits, 1):
        page = f" p.{h.page}" if h.page else ""
        text = " ".join(h.text.split())
        print(f"{i}. {h.score:.3f}  {h.source}{page}\n   {text[:300]}")
    if not hits:
        print("no results")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    svc = _services(settings)
    registry = svc.model_registry()
    if args.action == "import-gguf":
        if not args.file or not args.name:
            raise ValueError("models import-gguf needs FILE and --name NAME")
        path = registry.import_gguf(Path(args.file), args.name, progress=print)
        print(f"imported {args.file} as {args.name} ({path}); use it with RAGTUNE_GENERATOR={args.name}")
    elif args.action == "list":
        for m in registry.list():
            print(f"{m.name}\t{m.size_bytes / 1e6:.0f} MB\t{m.source}")
    else:
        emb = svc.embedder
        print(f"embedder ready: {emb.name} (dim {emb.dim})")
        print(f"generator ready: {svc.generator_path(progress=print)}")
        for line in svc.serving.install_packaged(settings.default_adapter):
            print(line)
    return 0


def cmd_adapters(args: argparse.Namespace, settings: Settings) -> int:
    svc = _services(settings)
    if args.action in ("activate", "delete", "merge") and not args.name:
        raise ValueError(f"adapters {args.action} needs a NAME")
    if args.action == "activate":
        record = svc.serving.activate(args.name)
        print(f"activated {record.name} (trained on {record.base_model}); served to requests "
              "that name no adapter")
    elif args.action == "deactivate":
        svc.serving.deactivate()
        print("deactivated: serving the base model")
    elif args.action == "delete":
        svc.serving.delete(args.name)
        print(f"deleted {args.name}")
    elif args.action == "merge":
        if not args.out:
            raise ValueError("adapters merge needs --out DIR, a new directory for the merged model")
        for warning in svc.serving.merge(args.name, Path(args.out)):
            print(f"ragtune: warning: {warning}", file=sys.stderr)
        print(f"merged {args.name} into {args.out}; serve it with RAGTUNE_GENERATOR={args.out}")
    else:
        active = svc.adapters.active()
        for r in svc.adapters.list():
            flag = "\tactive" if r.name == active else ""
            print(f"{r.name}\t{r.method}\tbase {r.base_model}\t{r.created_at}{flag}")
    return 0


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    options = {"k": args.k, "max_new_tokens": args.max_new_tokens, "mode": args.mode,
               "answer_style": args.answer_style, "strict": args.strict}
    client = connect(args, settings)
    items = (client.ask_stream(args.collection, args.question, **options, rerank=args.rerank)
             if client is not None
             else _ask_here(args, settings, options))
    answer, streamed = None, ""
    for item in items:
        if isinstance(item, AskResponse):
            answer = item
        elif args.stream and not args.json:
            streamed += item
            print(item, end="", flush=True)
    assert answer is not None
    if args.stream and not args.json and answer.answer.strip() != streamed.strip():
        # what was streamed is the model's draft; the answer given (the line holding it, its
        # [n] markers pointed at the passages it was copied from, or the refusal) is this
        print(f"\n=> {answer.answer}", end="")
    if args.json:
        print(answer.model_dump_json(indent=2))
        return 0
    print(("\n" if args.stream else "") + ("" if args.stream else answer.answer))
    for c in answer.citations:
        page = f" p.{c.page}" if c.page else ""
        print(f"  [{c.n}] {c.source}{page}")
    flags = f"refused={answer.refused} grounded={answer.grounded} support={answer.support_score}"
    print(f"  ({flags})")
    if answer.screening is not None and answer.screening.flagged:
        print(f"  (screen: {screening_line(answer)})")
    return 0


def screening_line(answer: AskResponse) -> str:
    """What the offensive-text screen found, for people: which side, its score and action."""
    s = answer.screening
    if s is None:
        return "off"
    said = [f"{side} flagged ({v.score:.2f}{', ' + ', '.join(v.terms) if v.terms else ''})"
            for side, v in (("question", s.question), ("answer", s.answer))
            if v is not None and v.flagged]
    return f"{'; '.join(said) or 'nothing flagged'}; action {s.action}" + \
        (", text changed" if s.changed else "")


def _ask_here(args: argparse.Namespace, settings: Settings,
              options: dict[str, Any]) -> Iterator[str | AskResponse]:
    from generation.rag import Answer
    from guardrails.policy import Screening

    from .routers.ask import answer_out

    svc = _services(settings)
    final, screening = None, None
    for item in svc.screened_ask(args.collection, args.question, svc.ask_config(**options),
                                 rerank=args.rerank):
        if isinstance(item, Answer):
            final = item
        elif isinstance(item, Screening):
            screening = item
        else:
            yield item
    if final is not None:
        yield answer_out(final, screening)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ragtune", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve the HTTP API and web page")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--cluster", metavar="ADDRESS", help="serve from replicas on the Ray cluster at "
                   "HOST:PORT or `local` (default: RAGTUNE_CLUSTER)")
    s.add_argument("--replicas", type=int, help="replicas answering search and ask on the cluster "
                   "(default: RAGTUNE_SERVE_REPLICAS)")
    s.set_defaults(func=cmd_serve)

    from . import cli_collections

    cli_collections.add_parser(sub)

    q = sub.add_parser("search", help="search a collection")
    q.add_argument("query")
    q.add_argument("-c", "--collection", required=True)
    q.add_argument("-k", type=int, default=5)
    q.add_argument("--source")
    q.add_argument("--doc-id")
    q.add_argument("--mode", choices=["hybrid", "dense", "keyword"])
    q.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=None,
                   help="rescore the top candidates with the cross-encoder RAGTUNE_RERANKER "
                        "(default: RAGTUNE_RERANK)")
    q.add_argument("--json", action="store_true")
    add_server_options(q)
    q.set_defaults(func=cmd_search)

    a = sub.add_parser("ask", help="a grounded answer with citations")
    a.add_argument("question")
    a.add_argument("-c", "--collection", required=True)
    a.add_argument("-k", type=int, default=5)
    a.add_argument("--max-new-tokens", type=int)
    a.add_argument("--mode", default="zero_shot", choices=["zero_shot", "cot"])
    a.add_argument("--answer-style", choices=["span", "line"],
                   help="span: the model's words; line: the sentence or table row holding the "
                        "answer (default: RAGTUNE_ANSWER_STYLE)")
    a.add_argument("--stream", action="store_true", help="print tokens as they come")
    a.add_argument("--strict", action=argparse.BooleanOptionalAction, default=None,
                   help="refuse an answer that is not grounded (default: RAGTUNE_REFUSE_UNGROUNDED)")
    a.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=None,
                   help="rerank the passages' search with RAGTUNE_RERANKER (default: RAGTUNE_RERANK)")
    a.add_argument("--json", action="store_true")
    add_server_options(a)
    a.set_defaults(func=cmd_ask)

    from . import cli_eval

    cli_eval.add_parser(sub)

    from . import cli_rerank

    cli_rerank.add_parser(sub)

    from . import cli_guard

    cli_guard.add_parser(sub)

    from . import cli_classifiers, cli_keys, cli_recipe, cli_synth, cli_tasks, cli_tune

    cli_classifiers.add_parser(sub)
    cli_tasks.add_parser(sub)
    cli_tune.add_parser(sub, cli_synth.add_generate_data_parser, cli_recipe.add_parser)
    cli_keys.add_parser(sub)

    m = sub.add_parser("models", help="prepare, list or import generator models")
    m.add_argument("action", nargs="?", default="prepare", choices=["prepare", "list", "import-gguf"])
    m.add_argument("file", nargs="?", help="GGUF file, for import-gguf")
    m.add_argument("--name", help="name to import the GGUF as")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("adapters", help="list, activate, deactivate, delete or merge adapters")
    d.add_argument("action", nargs="?", default="list",
                   choices=["list", "activate", "deactivate", "delete", "merge"])
    d.add_argument("name", nargs="?")
    d.add_argument("--out", help="new directory for the merged model, for merge")
    d.set_defaults(func=cmd_adapters)
    return p


def setup_logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # pypdf warns once per glyph it cannot map; the per-file result already says what matters
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    for noisy in ("httpx", "sentence_transformers", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.command == "collections" and args.action != "list" and not args.name:
        print("ragtune: error: collections create/delete/reindex needs a NAME", file=sys.stderr)
        return 2
    try:
        settings = Settings()
        return int(args.func(args, settings))
    except (RetrievalError, IngestError, GenerationError, TuningError, ClusterError,
            ValueError) as exc:
        print(f"ragtune: error: {_message(exc)}", file=sys.stderr)
        return 2
    except RagtuneError as exc:
        print(f"ragtune: error: {error_message(exc, _server_url(args))}", file=sys.stderr)
        return 1 if exc.status >= 500 else 2
    except ServerUnreachable as exc:
        print(f"ragtune: error: {exc}", file=sys.stderr)
        return 3
    except FileNotFoundError as exc:
        print(f"ragtune: error: {exc.filename or exc}: no such file or directory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ragtune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (`| head`) left: what it wanted was written
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _server_url(args: argparse.Namespace) -> str:
    from .cli_remote import default_url

    settings = Settings()
    return getattr(args, "server", None) or (
        settings.url if settings.url not in ("auto", "local") else default_url(settings))


def _message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic ValidationError from Settings
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                         for e in errors())
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
