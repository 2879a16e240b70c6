"""The runner: takes queued jobs one at a time and runs each in its own worker process.

A crash, an out-of-memory kill or a `kill -9` of the worker ends that job (interrupted when killed
by a signal, failed when it exited with an error, with the tail of its log), never the process that
runs the runner (the API, or `ragtune tune start`). The worker is started with a parent-death
signal, so it does not outlive a killed runner; at start-up the runner marks jobs whose worker is
gone as interrupted. One job runs at a time: training takes the whole machine.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .jobs import JobStore, TuningJob

log = logging.getLogger("ragtune.tuning")

WORKER_LOG = "worker.log"
TERM_GRACE_S = 120.0
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


class TuningRunner:
    """Runs queued jobs from `store` with `command(job) -> argv` as worker processes."""

    def __init__(self, store: JobStore, runs_root: Path, command: Callable[[TuningJob], Sequence[str]],
                 on_finished: Callable[[TuningJob], None] | None = None, poll_s: float = 1.0,
                 env: dict[str, str] | None = None) -> None:
        self.store = store
        self.runs_root = Path(runs_root)
        self.command = command
        self.on_finished = on_finished
        self.poll_s = poll_s
        self.env = env
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # --- the background loop (the API) ---
    def start(self) -> None:
        lost = self.store.recover()
        if lost:
            log.warning("tuning jobs %s were interrupted by a restart; resume them to continue", lost)
        self.store.heartbeat(os.getpid())
        self._thread = threading.Thread(target=self._loop, name="tuning-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.store.heartbeat(os.getpid())
            job = self.store.claim_next()
            if job is None:
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
                                          stdin=subprocess.DEVNULL, env=self.env,
                                          preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            self.store.update(job.id, pid=self._proc.pid)
            code = self._proc.wait()
            self._proc = None
        ended = self.store.get(job.id)
        if ended.state == "running":  # the worker died before recording an outcome
            if code < 0:
                name = signal.Signals(-code).name
                self.store.finish(job.id, "interrupted", error=(
                    f"the worker was killed by {name} at step {ended.step}/{ended.total_steps}; "
                    "resume the job to continue from its last checkpoint"))
            else:
                self.store.finish(job.id, "failed", error=(
                    f"the worker exited with code {code}:\n{tail(run_dir / WORKER_LOG)}"))
            ended = self.store.get(job.id)
        if self.on_finished is not None:
            try:
                self.on_finished(ended)
            except Exception:  # noqa: BLE001 - e.g. promotion failed; the job itself is done
                log.exception("after tuning job %s", job.id)
        return ended
