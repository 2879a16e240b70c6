"""`ragtune tune generate-data`: synthetic chat-format training data from a use case or a collection.

The data is written by an OpenAI-compatible endpoint (--endpoint or RAGTUNE_OPENAI_BASE_URL) or, when
none is set, by the local generator. Progress goes to stderr; the summary to stdout. Exit codes:
0 all `n` examples written, 1 fewer were (the rest were dropped), 2 bad input (raised to cli.main).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tuning.chat_clients import ChatClient, GeneratorClient, OpenAICompatClient
from tuning.synthetic import SyntheticSet, generate_use_case

from .cli_services import open_services as _services
from .settings import Settings


def add_generate_data_parser(subparsers: Any) -> None:
    g = subparsers.add_parser(
        "generate-data", help="write synthetic chat-format training data (JSONL)",
        description="Prompt/response pairs with a generated system message for a use case, or "
                    "RAG examples (numbered passages, cited answers, refusals) from a collection.")
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--use-case", help="what the assistant is for, in a sentence or two")
    what.add_argument("--from-collection", metavar="NAME", help="build RAG examples from this collection")
    g.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    g.add_argument("--n", type=int, default=100, help="examples wanted (default 100)")
    g.add_argument("--temperature", type=float, default=0.7)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--max-attempts", type=int, help="give up after this many tries (default 3n+10)")
    g.add_argument("--unanswerable-fraction", type=float, default=0.2,
                   help="share of RAG examples answered with the refusal sentence (default 0.2)")
    g.add_argument("-k", type=int, default=3, help="passages per RAG example (default 3)")
    g.add_argument("--focus-sentences", type=int,
                   help="shorten passages as serving does (default RAGTUNE_FOCUS_SENTENCES)")
    g.add_argument("--answer-suffix", help="appended to each cited answer, e.g. 'Sources: [{n}]'")
    g.add_argument("--answers", choices=["model", "span"],
                   help="RAG answers: model = the model writes question and answer; span = a "
                        "sentence of the chunk is the answer and the model writes its question "
                        "(default: span with the local generator, model with an endpoint)")
    g.add_argument("--endpoint", help="OpenAI-compatible API root (default RAGTUNE_OPENAI_BASE_URL; "
                                      "neither = the local generator)")
    g.add_argument("--api-key", help="default RAGTUNE_OPENAI_API_KEY")
    g.add_argument("--model", help="default RAGTUNE_OPENAI_MODEL")
    g.set_defaults(func=cmd_generate_data)


def make_client(args: argparse.Namespace, settings: Settings) -> ChatClient:
    endpoint = args.endpoint or settings.openai_base_url
    if endpoint:
        key = args.api_key or settings.openai_api_key.get_secret_value()
        model = args.model or settings.openai_model
        print(f"writing with {model} at {endpoint}", file=sys.stderr)
        return OpenAICompatClient(endpoint, key, model)
    print(f"writing with the local generator ({settings.generator})", file=sys.stderr)
    return GeneratorClient(_services(settings).serving.generator)


def cmd_generate_data(args: argparse.Namespace, settings: Settings) -> int:
    if args.n < 1:
        raise ValueError(f"--n {args.n} must be at least 1")
    if args.use_case is not None and not args.use_case.strip():
        raise ValueError("--use-case is empty: describe what the assistant is for")

    def progress(kept: int, attempts: int) -> None:  # a line each, so logs and pipes read well
        print(f"{kept}/{args.n} examples after {attempts} attempts", file=sys.stderr, flush=True)

    if args.from_collection:
        result = _from_collection(args, settings, progress)
    else:
        result = generate_use_case(make_client(args, settings), args.use_case, args.n,
                                   args.temperature, args.seed, max_attempts=args.max_attempts,
                                   progress=progress)
    return _finish(result, args)


def _from_collection(args: argparse.Namespace, settings: Settings, progress: Any) -> SyntheticSet:
    from tuning.synthetic_rag import CollectionChunks, check_suffix, generate_from_collection

    check_suffix(args.answer_suffix)
    svc = _services(settings)
    source = CollectionChunks(svc.collection(args.from_collection), svc.embedder)
    focus = settings.focus_sentences if args.focus_sentences is None else args.focus_sentences
    client = make_client(args, settings)
    answers = args.answers or ("span" if isinstance(client, GeneratorClient) else "model")
    print(f"answers: {answers}", file=sys.stderr)
    return generate_from_collection(
        source, client, args.n, args.unanswerable_fraction, args.k, args.seed,
        args.answer_suffix, args.temperature, focus_sentences=focus, max_attempts=args.max_attempts,
        progress=progress, answers=answers)


def _finish(result: SyntheticSet, args: argparse.Namespace) -> int:
    dropped = ", ".join(f"{n} {why}" for why, n in sorted(result.dropped.items())) or "none"
    if not result.examples:
        why = result.stopped or "try another model or temperature"
        print(f"ragtune: error: no usable examples after {result.attempts} attempts "
              f"(dropped: {dropped}); {why}", file=sys.stderr)
        return 1
    result.write_jsonl(args.out)
    print(f"wrote {len(result.examples)} examples to {args.out} ({result.attempts} attempts; "
          f"dropped: {dropped})")
    if len(result.examples) < args.n:
        print(f"ragtune: warning: only {len(result.examples)} of {args.n} examples; raise "
              "--max-attempts or change the temperature", file=sys.stderr)
        return 1
    return 0
