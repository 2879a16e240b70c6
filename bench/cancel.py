"""How long a tuning cancel takes, phase by phase: from `JobStore.cancel` (what
`POST /v1/tuning/jobs/{id}/cancel` calls) until the job's state is final and its worker process is gone.

The server's own wiring (`Services`, its runner and real `python -m api.tuning_worker` processes) on the
packaged SmolLM2-135M, on CPU. Each phase is reached by what makes it last: queued (no runner yet),
loading (cancelled as the worker reports it), tokenizing (long examples: a second each), training (a
step of several micro-batches, cancelled inside one), long-step (one micro-batch of 4 x 512 tokens
per step, cancelled inside it: the worker cannot stop before it ends, so the runner kills it) and the
gate (50 prompts of 96 new tokens).

Bound: the runner sends SIGTERM within its poll interval and SIGKILL `CANCEL_GRACE_S` later, so a job
is final within poll + grace + the time to reap the worker; the bound printed is that plus 2 s slack.

Measured (2 shared CPU cores; seconds to the final state / to the worker's exit; before: the runner
only waited and the worker only looked for a cancel between steps, results/cancel_before.json):

    phase       before                       after (results/cancel.json)
    queued      0.00 / 0.00                  0.00 / 0.00
    loading     14.0 / 16.3                  0.44 / 0.82
    tokenizing  27.3 / 29.9                  0.21 / 1.75
    training    22.5 / 25.3                  1.64 / 4.98
    long-step   9.6 / 13.2                   6.04 / 6.04 (SIGKILL after the 5 s grace)
    gate        never: the job succeeded     0.71 / 3.66
                after 28.2 / 30.9

The before figures are the rest of the phase, so they grow with the model and the data (a 10 MiB
example used to take minutes); the after ones do not.

    python -m bench.cancel [--data-dir /tmp/ragtune-cancel] [--phases queued loading ...]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import write

PHASES = ("queued", "loading", "tokenizing", "training", "long-step", "gate")
ROWS = [{"instruction": f"Name item {i}.", "output": f"Item {i}. Sources: [1]"} for i in range(16)]
WORDS = "alpha beta gamma delta invoice receipt payment policy refund ledger".split()


def long_rows(n: int, chars: int) -> list[dict[str, str]]:
    text = " ".join(f"{WORDS[i % len(WORDS)]}{i % 97}" for i in range(chars // 6))[:chars]
    return [{"instruction": f"Describe item {i}.", "output": f"{i} {text}"} for i in range(n)]


def dataset(svc: Any, root: Path, name: str, rows: list[dict[str, str]]) -> str:
    path = root / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(svc.tuning.add_dataset(path).id)


def scenarios(svc: Any, root: Path, model: str) -> dict[str, tuple[Any, Callable[[Any], bool]]]:
    """phase -> (JobSpec, when to cancel: a test on the job as the store has it)."""
    from tuning.jobs import GateSpec, JobSpec

    small = dataset(svc, root, "small", ROWS)
    tiny = {"batch_size": 1, "grad_accum": 1, "model_max_length": 48, "val_fraction": 0.2,
            "lora_r": 4, "lora_alpha": 8, "num_threads": 1}

    def spec(name: str, ds: str, gate: GateSpec | None = None, **train: Any) -> JobSpec:
        return JobSpec(name=name, dataset_id=ds, model=model, train={**tiny, **train},
                       gate=gate or GateSpec())

    def after(reached: Callable[[Any], bool], delay: float) -> Callable[[Any], bool]:
        """Due `delay` seconds after the job was first seen to have `reached` a point."""
        seen: list[float] = []

        def due(job: Any) -> bool:
            if not seen and reached(job):
                seen.append(time.monotonic())
            return bool(seen) and time.monotonic() - seen[0] >= delay
        return due

    def loading(job: Any) -> bool:
        return bool(job.phase == "loading")

    return {
        "queued": (spec("c-queued", small, max_steps=2), lambda job: True),
        "loading": (spec("c-loading", small, max_steps=2), after(loading, 0.0)),
        "tokenizing": (spec("c-tokenizing", dataset(svc, root, "long", long_rows(120, 99_000)),
                            max_steps=2, val_fraction=0.05), after(loading, 15.0)),
        "training": (spec("c-training", small, max_steps=6, batch_size=2, grad_accum=8,
                          model_max_length=128, save_steps=1),
                     after(lambda job: job.step >= 1, 1.0)),
        "long-step": (spec("c-long-step", dataset(svc, root, "medium", long_rows(16, 4000)),
                           max_steps=4, batch_size=4, model_max_length=512, save_steps=1),
                      after(lambda job: job.step >= 1, 2.0)),
        "gate": (spec("c-gate", small, GateSpec(regex=r"Sources: \[\d+\]", prompts=50,
                                                max_new_tokens=96), max_steps=1),
                 lambda job: (job.phase or "").startswith("gate")),
    }


def gone(pid: int | None) -> bool:
    """Whether the worker has exited and been reaped by the runner. Not `pid_alive`: a killed
    multi-threaded process shows as a zombie while its other threads are still being torn down."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def measure(svc: Any, spec: Any, due: Callable[[Any], bool], timeout: float) -> dict[str, Any]:
    store = svc.tuning.store
    job = store.create(spec)
    svc.tuning_runner.wake()
    deadline = time.monotonic() + timeout
    while not due(job := store.get(job.id)):
        if job.finished or time.monotonic() > deadline:
            return {"state": job.state, "error": f"never reached the phase (ended {job.state}, "
                                                 f"phase {job.phase})"}
        time.sleep(0.05)
    pid, phase, step = job.pid, job.phase, job.step
    t0 = time.monotonic()
    store.cancel(job.id)
    final_s = exit_s = None
    while time.monotonic() - t0 < timeout and (final_s is None or exit_s is None):
        now = time.monotonic() - t0
        if final_s is None and store.get(job.id).finished:
            final_s = now
        if exit_s is None and gone(pid):
            exit_s = now
        time.sleep(0.02)
    ended = store.get(job.id)
    return {"phase_seen": phase, "step_seen": step, "state": ended.state, "final_s": final_s,
            "exit_s": exit_s, "step": ended.step, "error": ended.error}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ragtune-cancel"))
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--out", default="cancel")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from api.services import Services
    from api.settings import Settings
    from generation.models import ModelRegistry
    from tuning import runner

    model = str(ModelRegistry(args.data_dir / "models").ensure_default())
    run_root = args.data_dir / f"run-{int(time.time())}"
    settings = Settings(data_dir=run_root, generator=model, device="cpu")
    svc = Services(settings)
    grace = getattr(runner, "CANCEL_GRACE_S", None)
    bound = (runner.CANCEL_POLL_S + grace + 2.0) if grace is not None else None
    jobs = scenarios(svc, run_root, model)
    results: dict[str, Any] = {}
    try:
        if "queued" in args.phases:  # before the runner starts, so the job stays queued
            results["queued"] = measure(svc, *jobs["queued"], args.timeout)
        svc.start_tuning_runner()
        for phase in args.phases:
            if phase != "queued":
                results[phase] = measure(svc, *jobs[phase], args.timeout)
            report(phase, results[phase], bound)
    finally:
        svc.close()
    ok = bound is not None and all((r.get("final_s") or 1e9) <= bound and (r.get("exit_s") or 0) <= bound
                                   and r["state"] == "cancelled" for r in results.values())
    print(f"all phases final within the bound: {ok}")
    write(args.out, {"bound_s": bound, "phases": results, "within_bound": ok})


def report(phase: str, r: dict[str, Any], bound: float | None) -> None:
    def s(v: float | None) -> str:
        return "never" if v is None else f"{v:.2f} s"

    limit = f"bound {bound:.1f} s" if bound is not None else "no bound (no cancel grace)"
    print(f"{phase:>10}: state {r['state']:<11} final after {s(r.get('final_s')):>8}, worker gone after "
          f"{s(r.get('exit_s')):>8} ({limit}; seen in phase {r.get('phase_seen')}, step "
          f"{r.get('step_seen')})", flush=True)


if __name__ == "__main__":
    main()
