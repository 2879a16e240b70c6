"""`ragtune tasks list | run NAME TEXT | eval NAME | probe NAME`: the task templates (tasks/).

`run` answers one input with the base model (or `--adapter`), or with a linear-probe `--classifier`;
`eval` scores a template on its shipped evaluation set per mode (`linear_probe` for a classification);
`probe` trains a classification template's linear probe on its labelled split and saves it as a
classifier. Everything runs in this process; bad names or inputs raise to `cli.main` (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from .cli_services import open_services as _services
from .settings import Settings

MODES = ("zero_shot", "few_shot", "cot")


def add_parser(subparsers: Any) -> None:
    t = subparsers.add_parser("tasks", help="task templates: sentiment, QA, translation, ...")
    tsub = t.add_subparsers(dest="tasks_command", required=True)
    tsub.add_parser("list", help="list the task templates").set_defaults(func=cmd_list)

    r = tsub.add_parser("run", help="run a template on one input")
    r.add_argument("name")
    r.add_argument("text")
    r.add_argument("--mode", default="zero_shot", choices=MODES)
    r.add_argument("--context", help="the passage, for qa")
    r.add_argument("-c", "--collection", help="qa: retrieve the passages from this collection")
    r.add_argument("-k", type=int, default=3, help="passages retrieved from --collection")
    r.add_argument("--choices", nargs="+", help="options to choose among (coreference)")
    r.add_argument("--target", help="the word to resolve (coreference)")
    r.add_argument("--adapter", help="an adapter to run with (default: the base model)")
    r.add_argument("--max-new-tokens", type=int)
    r.add_argument("--classifier", help="answer a classification with this linear-probe classifier")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_run)

    e = tsub.add_parser("eval", help="score a template on its evaluation set")
    e.add_argument("name")
    e.add_argument("--mode", action="append", choices=[*MODES, "linear_probe"],
                   help="repeatable (default: every prompting mode, and linear_probe where it applies)")
    e.add_argument("--limit", type=int, help="only the first N items")
    e.add_argument("--adapter", help="an adapter to run with (default: the base model)")
    e.add_argument("--json", action="store_true", help="also print every item's output as JSON")
    e.set_defaults(func=cmd_eval)

    p = tsub.add_parser("probe", help="train a classification template's linear probe and save it")
    p.add_argument("name")
    p.add_argument("--save-as", help="classifier name (default: task-NAME)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_probe)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from tasks import TEMPLATES
    from tasks.library import eval_items

    for t in TEMPLATES.values():
        probe = ", linear_probe" if t.classification and t.train_file else ""
        print(f"{t.name}\t{t.title}\tmodes: {', '.join(MODES)}{probe}\t"
              f"eval: {len(eval_items(t))} items, {t.metric}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from tasks import TaskInputError, get_template, run_task
    from tasks.templates import TaskInput

    template = get_template(args.name)
    svc = _services(settings)
    if args.classifier:
        if not template.classification:
            raise TaskInputError(f"task {args.name!r} is not a classification")
        probe = svc.classifiers.load(args.classifier, svc.embedder)
        result: dict[str, Any] = {"task": args.name, "mode": "linear_probe",
                                  "output": probe.predict([args.text], svc.embedder)[0]["label"]}
    else:
        context = args.context or ""
        if args.collection:
            context = "\n\n".join(h.text.strip() for h in svc.search(args.collection, args.text, args.k))
        item = TaskInput(args.text, context, tuple(args.choices or ()), args.target or "")
        template.check(item, args.mode)
        adapter = svc.serving.adapter_for(args.adapter or "base")
        run = run_task(template, svc.serving.generator_for(adapter), item, args.mode, adapter,
                       args.max_new_tokens)
        result = dataclasses.asdict(run)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        out = result["output"]
        print(json.dumps(out, ensure_ascii=False) if isinstance(out, dict) or out is None else out)
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from tasks import evaluate, evaluate_probe, get_template

    template = get_template(args.name)
    probe = template.classification and bool(template.train_file)
    modes = args.mode or [*MODES, *(["linear_probe"] if probe else [])]
    svc = _services(settings)
    for mode in modes:
        if mode == "linear_probe":
            score = evaluate_probe(template, svc.embedder)
        else:
            adapter = svc.serving.adapter_for(args.adapter or "base")
            score = evaluate(template, svc.serving.generator_for(adapter), mode, adapter=adapter,
                             limit=args.limit)
        also = "".join(f" {k}={v:.3f}" for k, v in score.also.items())
        print(f"{score.task}\t{score.mode}\t{score.metric}={score.score:.3f}{also}\tn={score.n}\t"
              f"{score.seconds:.1f}s")
        if args.json:
            print(json.dumps(dataclasses.asdict(score), ensure_ascii=False))
    return 0


def cmd_probe(args: argparse.Namespace, settings: Settings) -> int:
    from tasks import evaluate_probe, get_template, train_template_probe

    template = get_template(args.name)
    svc = _services(settings)
    probe, metrics = train_template_probe(template, svc.embedder)
    score = evaluate_probe(template, svc.embedder)
    metrics = {**metrics, "task": template.name, f"eval_{score.metric}": score.score, "n_eval": score.n}
    record = svc.classifiers.save(args.save_as or f"task-{template.name}", probe, metrics,
                                  overwrite=args.overwrite)
    print(f"saved classifier {record.name}: labels {', '.join(record.labels)}; "
          f"{score.metric} {score.score:.3f} on the {score.n}-item evaluation set")
    return 0
