"""The runner: takes queued jobs one at a time and runs each in its own worker process.

A crash, an out-of-memory kill or a `kill -9` of the worker ends that job (interrupted when killed
by a signal, failed when it exited with an error, with the tail of its log), never the process that
runs the runner (the API, or `ragtune tune start`). The worker is started with a parent-death
signal, so it does not outlive a killed runner; at start-up the runner marks jobs whose worker is
gone as interrupted, and keeps doing so while idle (a job claimed by a runner that was killed before
starting its worker has no worker to notice). One job runs at a time: training takes the whole machine.

A cancel takes effect within seconds in every phase: the runner watches the running job, sends its
worker SIGTERM as soon as a cancel is asked for (training stops at its next step with a checkpoint;
loading, tokenizing and the gate stop at once) and SIGKILL `CANCEL_GRACE_S` later if it is still
there, stuck in a call that no signal handler interrupts; the job then ends cancelled, resumable.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .jobs import JobStore, TuningJob

log = logging.getLogger("ragtune.tuning")

WORKER_LOG = "worker.log"
TERM_GRACE_S = 120.0
CANCEL_GRACE_S = 5.0
CANCEL_POLL_S = 0.25
RECOVER_EVERY_S = 10.0
LOG_TAIL_LINES = 15


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# OpenMP threads that sleep at a barrier instead of spinning: on this shared 2-core machine, with
# other processes busy, two spinning threads trained at 15 tokens/s and two passive ones at 66
# (one thread: 58); README "Runs sized to the data".
WORKER_THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def worker_env(env: dict[str, str] | None) -> dict[str, str]:
    """The worker's environment: `env` (default: this process's) with WORKER_THREAD_ENV where unset."""
    base = dict(os.environ if env is None else env)
    return {**WORKER_THREAD_ENV, **base}


class TuningRunner:
    """Runs queued jobs from `store` with `command(job) -> argv` as worker processes."""

    def __init__(self, store: JobStore, runs_root: Path, command: Callable[[TuningJob], Sequence[str]],
                 on_finished: Callable[[TuningJob], None] | None = None, poll_s: float = 1.0,
                 env: dict[str, str] | None = None, cancel_grace_s: float = CANCEL_GRACE_S) -> None:
        self.store = store
        self.runs_root = Path(runs_root)
        self.command = command
        self.on_finished = on_finished
        self.poll_s = poll_s
        self.env = env
        self.cancel_grace_s = cancel_grace_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # --- the background loop (the API) ---
    def start(self) -> None:
        self._recover()
        self.store.heartbeat(os.getpid())
        self._thread = threading.Thread(target=self._loop, name="tuning-runner", daemon=True)
        self._thread.start()

    def _recover(self) -> None:
        lost = self.store.recover()
        if lost:
            log.warning("tuning jobs %s lost their worker (a restart or a crash); resume them to "
                        "continue", lost)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        recovered = time.monotonic()
        while not self._stop.is_set():
            self.store.heartbeat(os.getpid())
            job = self.store.claim_next()
            if job is None:
                if time.monotonic() - recovered >= RECOVER_EVERY_S:
                    self._recover()
                    recovered = time.monotonic()
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            try:
                self.run(job)
            except Exception:  # noqa: BLE001 - a runner bug must not kill the loop
                log.exception("tuning job %s could not be run", job.id)
                self.store.finish(job.id, "failed", error="the runner could not start the worker")

    def stop(self, timeout: float = TERM_GRACE_S) -> None:
        """Stop taking jobs; a running worker gets SIGTERM (it checkpoints and marks the job
        interrupted), then SIGKILL after `timeout`."""
        self._stop.set()
        self._wake.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self.store.drop_runner(os.getpid())

    # --- one job (also used by `ragtune tune start` when no API is running) ---
    def run(self, job: TuningJob) -> TuningJob:
        """Run the claimed `job` in a worker process and wait for it; the job as it ended."""
        run_dir = self.runs_root / job.id
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / WORKER_LOG).open("ab") as out:
            self._proc = subprocess.Popen(list(self.command(job)), stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=worker_env(self.env),
                                          preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            self.store.update(job.id, pid=self._proc.pid)
            code, killed = self._watch(job.id, self._proc)
            self._proc = None
        ended = self.store.get(job.id)
        if ended.state == "running":  # the worker died before recording an outcome
            self.store.finish(job.id, *self._outcome(ended, code, killed, run_dir))
            ended = self.store.get(job.id)
        if self.on_finished is not None:
            try:
                self.on_finished(ended)
            except Exception:  # noqa: BLE001 - e.g. promotion failed; the job itself is done
                log.exception("after tuning job %s", job.id)
        return ended

    def _watch(self, job_id: str, proc: subprocess.Popen[bytes]) -> tuple[int, bool]:
        """Wait for the worker: (its exit code, whether a cancel had to kill it). A cancel request
        gets it SIGTERM at once and SIGKILL `cancel_grace_s` later. A background runner keeps
        its heartbeat while it waits, so a CLI does not take it for gone during a long job."""
        kill_at: float | None = None
        killed = False
        beat = time.monotonic()
        while True:
            try:
                return proc.wait(CANCEL_POLL_S), killed
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if self._thread is not None and not self._stop.is_set() and now - beat >= self.poll_s:
                self.store.heartbeat(os.getpid())
                beat = now
            if kill_at is None and self.store.cancel_requested(job_id):
                proc.send_signal(signal.SIGTERM)
                kill_at = now + self.cancel_grace_s
            elif kill_at is not None and now >= kill_at and not killed:
                log.warning("tuning job %s: the worker did not stop within %.0f s of the cancel; "
                            "killing it", job_id, self.cancel_grace_s)
                proc.kill()
                killed = True

    def _outcome(self, job: TuningJob, code: int, killed: bool, run_dir: Path) -> tuple[str, str | None]:
        """(state, error) of a job whose worker ended without recording one."""
        where = f"at step {job.step}/{job.total_steps}"
        if job.cancel_requested:
            return "cancelled", (f"the worker did not stop within {self.cancel_grace_s:.0f} s of the "
                                 f"cancel ({job.phase or 'starting'}, {where}) and was killed; resume "
                                 "continues from its last checkpoint") if killed else None
        if code < 0:
            return "interrupted", (f"the worker was killed by {signal.Signals(-code).name} {where}; "
                                   "resume the job to continue from its last checkpoint")
        return "failed", f"the worker exited with code {code}:\n{tail(run_dir / WORKER_LOG)}"
