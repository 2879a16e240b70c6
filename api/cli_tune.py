"""`ragtune tune start|list|status|cancel|resume`: fine-tuning jobs from the command line.

`tune start` takes the `autotrain llm` flags (generated from TrainConfig, so every option has one),
stores the data, queues the job and follows it with a progress bar. When `ragtune serve` is running,
its runner takes the job; otherwise this command runs it (in a worker process, as the API would).
`start`, `resume`, `list`, `status` and `cancel` go through a running server when one answers
(api/cli_remote.py: the data is uploaded, the job queued and followed over HTTP), else work on the
job table here; either way they show a job as the API does (TuningJobOut). A `--model` that is a
path trains in-process: over HTTP a job trains only on a registered model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuning.config import TrainConfig
from tuning.jobs import FINISHED, JobRequest, TuningJob
from tuning.service import JOB_METHODS, RESERVED, default_method

from .cli_remote import add_server_options, connect
from .cli_services import open_services as _services
from .client import RagtuneClient
from .schemas import TuningJobOut
from .settings import Settings

POLL_S = 1.0


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig option (`--lora-r`, `--peft/--no-peft`, ...), unset by default so
    TrainConfig's own defaults apply."""
    for f in dataclasses.fields(TrainConfig):
        if f.name in RESERVED:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default) if f.default is not None else (int if "steps" in f.name or
                                                              "size" in f.name else str)
        helptext = f.metadata.get("help", "") + (f" (default {f.default})" if f.default not in
                                                 (None, "") else "")
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=helptext)
        else:
            p.add_argument(flag, type=kind, default=argparse.SUPPRESS, dest=f.name, help=helptext)


def add_start_arguments(s: argparse.ArgumentParser, name_required: bool = True) -> None:
    """The flags of `tune start` after --data-path: naming, gate and TrainConfig options."""
    s.add_argument("--name", required=name_required, help="the adapter's (or classifier's) name")
    s.add_argument("--valid-path", type=Path, help="validation data (default: 10%% of --data-path)")
    s.add_argument("--model", help="base model directory (default: the serving generator)")
    s.add_argument("--method", choices=JOB_METHODS,
                   help="default: qlora on CUDA, lora elsewhere")
    s.add_argument("--label-column", default="label", help="for --method linear_probe")
    s.add_argument("--mix-data", type=Path, help="chat examples mixed into the training split only "
                   "(--mix-share of it), e.g. grounded-QA examples that keep the served behaviour")
    s.add_argument("--resume", action="store_true",
                   help="resume the interrupted/failed/cancelled job with this --name instead")
    s.add_argument("--screen", action="store_true",
                   help="screen the data files for offensive text first (as `ragtune guard "
                        "dataset`) and stop, listing what was flagged, when anything is")
    g = s.add_argument_group("gate (after training: base vs tuned on the held-out prompts)")
    g.add_argument("--check-regex", help="every answer must match this regex")
    g.add_argument("--check-max-chars", type=int, help="every answer at most this long")
    g.add_argument("--check-phrase", help="every answer must contain this phrase")
    g.add_argument("--eval-collection", help="also compare answer accuracy on this collection")
    g.add_argument("--eval-questions", type=Path, help="golden questions (kb_dev format)")
    g.add_argument("--gate-prompts", type=int, default=50)
    g.add_argument("--gate-max-new-tokens", type=int, default=96)
    g.add_argument("--promote-if-better", action="store_true",
                   help="activate the adapter if adherence rises and accuracy does not fall")
    s.add_argument("--detach", action="store_true", help="queue and return at once")
    opts = s.add_argument_group("training options (TrainConfig)")
    add_train_flags(opts)  # type: ignore[arg-type]


def add_parser(sub: Any, *more: Callable[[Any], object]) -> argparse.ArgumentParser:
    """`ragtune tune` and its commands; each of `more` adds further `tune` subcommands (the
    data-making ones, kept in their own modules)."""
    t = sub.add_parser("tune", help="fine-tuning: generate-data, start, list, status, cancel, resume")
    tsub = t.add_subparsers(dest="tune_command", required=True)

    s = tsub.add_parser("start", help="queue a fine-tune and follow it",
                        description="Queue a fine-tuning job (flags as in `autotrain llm`).")
    s.add_argument("--data-path", required=True, type=Path, help="training data (.jsonl/.json/.csv)")
    add_start_arguments(s)
    add_server_options(s)
    s.set_defaults(func=cmd_start)

    for add in more:
        add(tsub)

    ls = tsub.add_parser("list", help="recent jobs")
    ls.add_argument("--json", action="store_true")
    add_server_options(ls)
    ls.set_defaults(func=cmd_list)
    for name, func, text in (("status", cmd_status, "one job, with its gate report"),
                             ("cancel", cmd_cancel, "stop a job (it keeps a checkpoint)"),
                             ("resume", cmd_resume, "continue a job from its last checkpoint")):
        c = tsub.add_parser(name, help=text)
        c.add_argument("job_id")
        if name == "status":
            c.add_argument("--json", action="store_true")
        if name == "resume":
            c.add_argument("--detach", action="store_true")
        add_server_options(c)
        c.set_defaults(func=func)
    return t


def _train_options(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(TrainConfig)} - set(RESERVED)
    return {k: v for k, v in vars(args).items() if k in names}


def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "screen", False) and not args.resume:
        from .cli_guard import screen_before_training

        files = [getattr(args, a, None) for a in ("data_path", "valid_path", "mix_data")]
        if not screen_before_training([f for f in files if f is not None], settings):
            return 1
    client = None if args.model and Path(args.model).exists() else connect(args, settings)
    if client is not None:
        return _start_served(client, args)
    svc = _services(settings)
    desk = svc.tuning
    desk.store.recover()  # jobs whose worker died with no runner to notice are interrupted
    if args.resume:
        previous = [j for j in desk.store.list(limit=1000) if j.name == args.name and j.resumable]
        if not previous:
            raise ValueError(f"no interrupted, failed or cancelled job named {args.name!r} to resume")
        return _follow(svc, desk.store.requeue(previous[0].id), args.detach)
    options = _train_options(args)
    args.method = args.method or default_method(settings.device, options)
    probe = args.method == "linear_probe"
    kind = "labelled" if probe else "train"
    extra = {"text_column": options.get("text_column", "text"), "label_column": args.label_column} \
        if probe else {}
    dataset = desk.add_dataset(args.data_path, kind=kind, **extra)
    valid = desk.add_dataset(args.valid_path).id if args.valid_path else None
    questions = desk.add_dataset(args.eval_questions, kind="questions").id \
        if args.eval_questions else None
    mix = desk.add_dataset(args.mix_data).id if args.mix_data else None
    checks = {"regex": args.check_regex, "max_chars": args.check_max_chars,
              "required_phrase": args.check_phrase}
    spec = desk.plan(JobRequest(
        name=args.name, dataset_id=dataset.id, method=args.method, model=args.model,
        valid_dataset_id=valid, train=options, label_column=args.label_column,
        checks={k: v for k, v in checks.items() if v is not None},
        eval_collection=args.eval_collection, eval_questions=questions,
        gate_prompts=args.gate_prompts, gate_max_new_tokens=args.gate_max_new_tokens,
        promote_if_better=args.promote_if_better, mix_dataset_id=mix))
    job = desk.submit(spec, svc.classifier_names())
    print(f"queued tuning job {job.id} ({spec.method}, {dataset.records} records, dataset "
          f"{dataset.id})", file=sys.stderr)
    _print_plan(job.spec.plan)
    return _follow(svc, job, args.detach)


def _start_served(client: RagtuneClient, args: argparse.Namespace) -> int:
    """`tune start` through the server: the data files uploaded with the job, which the server
    checks in full and queues; then followed."""
    if args.resume:
        previous = [j for j in client.tuning_jobs() if j.name == args.name and j.resumable]
        if not previous:
            raise ValueError(f"no interrupted, failed or cancelled job named {args.name!r} to resume")
        return _follow_served(client, client.resume_tuning_job(previous[0].job_id), args.detach)
    files = {field: path for field, path in (("file", args.data_path), ("valid_file", args.valid_path),
                                             ("questions_file", args.eval_questions),
                                             ("mix_file", args.mix_data)) if path}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(2, "no such file", str(path))
    checks = {k: v for k, v in (("regex", args.check_regex), ("max_chars", args.check_max_chars),
                                ("required_phrase", args.check_phrase)) if v is not None}
    body = {"name": args.name, "method": args.method, "base_model": args.model,
            "config": _train_options(args), "label_column": args.label_column,
            "checks": checks or None, "eval_collection": args.eval_collection,
            "gate_prompts": args.gate_prompts, "gate_max_new_tokens": args.gate_max_new_tokens,
            "promote_if_better": args.promote_if_better}
    job = client.start_tuning_job({k: v for k, v in body.items() if v is not None}, files)
    print(f"queued tuning job {job.job_id} ({job.spec.method}, dataset {job.spec.dataset_id}) on "
          f"{client.base_url}", file=sys.stderr)
    _print_plan(job.plan)
    return _follow_served(client, job, args.detach)


def _follow_served(client: RagtuneClient, job: TuningJobOut, detach: bool) -> int:
    """Wait for `job`, run by the server, with a progress bar; Ctrl-C cancels it."""
    if detach:
        print(job.job_id)
        return 0
    try:
        final = _progress(client.tuning_job, job.job_id)
    except KeyboardInterrupt:
        print(f"\ncancelling {job.job_id} (a checkpoint is kept; `ragtune tune resume "
              f"{job.job_id}`)", file=sys.stderr)
        client.cancel_tuning_job(job.job_id)
        final = _progress(client.tuning_job, job.job_id)
    _print_outcome(final)
    return 0 if final.state == "succeeded" else 1


def _follow(svc: Any, job: TuningJob, detach: bool) -> int:
    """Wait for `job` with a progress bar, running it here when no server is running jobs."""
    store = svc.tuning.store
    if detach:
        print(job.id)
        return 0
    worker: threading.Thread | None = None
    if not store.runner_alive():
        print("no `ragtune serve` is running jobs: running it here", file=sys.stderr)
        worker = threading.Thread(target=_run_here, args=(svc, job.id), daemon=True)
        worker.start()
    try:
        final = _progress(store.get, job.id)
    except KeyboardInterrupt:
        print(f"\ncancelling {job.id} (a checkpoint is kept; `ragtune tune resume {job.id}`)",
              file=sys.stderr)
        store.cancel(job.id)
        final = _progress(store.get, job.id)
    if worker is not None:
        worker.join()
    _print_outcome(final)
    return 0 if final.state == "succeeded" else 1


def _run_here(svc: Any, job_id: str) -> None:
    """Run queued jobs (oldest first) in worker processes until `job_id` has run."""
    store = svc.tuning.store
    while True:
        claimed = store.claim_next()
        if claimed is None:
            return
        svc.tuning_runner.run(claimed)
        if claimed.id == job_id:
            return


def _progress(get: Callable[[str], Any], job_id: str) -> Any:
    """Show the job that `get(job_id)` reads (a TuningJob here, a TuningJobOut from a server)
    until it has finished; that last reading."""
    from tqdm import tqdm

    job = get(job_id)
    with tqdm(total=max(job.total_steps, 1), unit="step", file=sys.stderr) as bar:
        while True:
            job = get(job_id)
            if job.total_steps and bar.total != job.total_steps:
                bar.total = job.total_steps
            bar.n = job.step
            post = {"state": job.phase or job.state}
            if job.loss is not None:
                post["loss"] = f"{job.loss:.3f}"
            if job.eval_loss is not None:
                post["eval"] = f"{job.eval_loss:.3f}"
            bar.set_postfix(post, refresh=False)
            bar.refresh()
            if job.state in FINISHED:
                return job
            time.sleep(POLL_S)


def _print_plan(plan: dict[str, Any] | None) -> None:
    """The run's plan and its warnings, before it starts (tuning.sizing)."""
    if not plan:
        return
    from tuning.sizing import RunPlan

    run = RunPlan(**plan)
    print(run.line(), file=sys.stderr)
    for warning in run.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _print_outcome(job: TuningJob | TuningJobOut) -> None:
    result = job.result or {}
    print(f"job {job.job_id if isinstance(job, TuningJobOut) else job.id}: {job.state}")
    if job.error:
        print(f"  error: {job.error}")
    train = result.get("train") or {}
    if train:
        print(f"  steps {train.get('steps')}, train loss {train.get('train_loss')}, eval loss "
              f"{train.get('eval_loss')}, {train.get('tokens_per_s', 0):.1f} train tokens/s, "
              f"{train.get('seconds', 0) / 60:.1f} min of training")
    gate = result.get("gate")
    if gate:
        minutes = f" ({gate['seconds'] / 60:.1f} min)" if gate.get("seconds") is not None else ""
        print(f"  gate{minutes}: {gate.get('reason')}")
    if result.get("verdict"):
        print(f"  {result['verdict']}")
    if result.get("adapter"):
        promoted = " (promoted: now active)" if result.get("promote") else ""
        print(f"  adapter: {result['adapter']}{promoted}")
    if result.get("classifier"):
        print(f"  classifier: {result['classifier']} {json.dumps(result.get('metrics', {}))}")


def _served(job: TuningJob, settings: Settings) -> TuningJobOut:
    from .routers.tuning import job_out

    return job_out(job, settings.data_dir)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    client = connect(args, settings)
    jobs = client.tuning_jobs() if client is not None else \
        [_served(j, settings) for j in _services(settings).tuning.store.list()]
    if args.json:
        print(json.dumps([j.model_dump() for j in jobs], indent=2))
        return 0
    for j in jobs:
        loss = f"{j.loss:.3f}" if j.loss is not None else "-"
        print(f"{j.job_id}\t{j.name}\t{j.spec.method}\t{j.state}\t{j.step}/{j.total_steps}"
              f"\tloss {loss}\t{j.created_at[:19]}")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    client = connect(args, settings)
    job = client.tuning_job(args.job_id) if client is not None else \
        _served(_services(settings).tuning.store.get(args.job_id), settings)
    if args.json:
        print(job.model_dump_json(indent=2))
        return 0
    eta = f", ETA {job.eta_s:.0f} s" if job.eta_s and job.state not in FINISHED else ""
    print(f"{job.job_id} {job.name} ({job.spec.method}): {job.state}"
          f"{' - ' + job.phase if job.phase else ''}, step {job.step}/{job.total_steps}{eta}")
    if job.state not in FINISHED:
        _print_plan(job.plan)
    _print_outcome(job)
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    client = connect(args, settings)
    job = client.cancel_tuning_job(args.job_id) if client is not None else \
        _served(_services(settings).tuning.store.cancel(args.job_id), settings)
    done = job.state in FINISHED
    print(f"{job.job_id}: {'cancelled' if done else 'cancel requested (it stops within seconds)'}")
    return 0


def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    client = connect(args, settings)
    if client is not None:
        return _follow_served(client, client.resume_tuning_job(args.job_id), args.detach)
    svc = _services(settings)
    return _follow(svc, svc.tuning.store.requeue(args.job_id), args.detach)
