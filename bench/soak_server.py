"""The soak's server (bench.soak): `ragtune serve` on a free loopback port in its own process, killed
with SIGKILL and started again on the same data dir, each run of it a `Life` with its memory samples."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HEALTH_TIMEOUT_S = 600.0


@dataclass
class Life:
    """One run of the server process, from start to its kill (or the final stop)."""

    number: int
    pid: int
    port: int
    healthy_after_s: float = 0.0
    warm_at: float | None = None
    rss_kb: list[tuple[float, int]] = field(default_factory=list)
    end: str = "running"

    def rss_span(self) -> tuple[int, int] | None:
        """(first RSS after warm-up, last RSS), in KiB; None if the life never warmed up."""
        warm = [kb for t, kb in self.rss_kb if self.warm_at is not None and t >= self.warm_at]
        return (warm[0], warm[-1]) if len(warm) >= 2 else None


class Server:
    """`ragtune serve` on a free loopback port; killed and restarted on the same data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.lives: list[Life] = []
        self.up = threading.Event()
        self.generation = 0  # bumped at every kill: a request that saw it change was cut by one
        self.url = ""

    def start(self) -> Life:
        port = free_port()
        env = {**os.environ, "RAGTUNE_DATA_DIR": str(self.data_dir), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAGTUNE_DEVICE": "cpu"}
        ragtune = Path(sys.executable).with_name("ragtune")
        log = (self.data_dir / f"server-{len(self.lives) + 1}.log").open("ab")
        started = time.monotonic()
        self.proc = subprocess.Popen([str(ragtune), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                     env=env, cwd=self.data_dir, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        self.url = f"http://127.0.0.1:{port}"
        life = Life(len(self.lives) + 1, self.proc.pid, port)
        self.lives.append(life)
        self._wait_healthy()
        life.healthy_after_s = round(time.monotonic() - started, 1)
        self.up.set()
        return life

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode} while starting; "
                                   f"see {self.data_dir}/server-{len(self.lives)}.log")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the server was not healthy within {HEALTH_TIMEOUT_S:.0f} s")

    def kill(self) -> None:
        assert self.proc is not None
        self.up.clear()
        self.generation += 1
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.lives[-1].end = "killed"

    def stop(self) -> bool:
        """A clean shutdown (SIGTERM); whether the server says it completed. (uvicorn re-raises the
        SIGTERM once it has shut down, so the exit code is -15 either way.)"""
        if self.proc is None or self.proc.poll() is not None:
            return False
        self.up.clear()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(180)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.lives[-1].end = "stopped"
        log = self.data_dir / f"server-{len(self.lives)}.log"
        return "Application shutdown complete" in log.read_text(errors="replace")

    def sample_rss(self) -> None:
        life = self.lives[-1] if self.lives else None
        if life is None or not self.up.is_set():
            return
        try:
            for line in Path(f"/proc/{life.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    life.rss_kb.append((time.monotonic(), int(line.split()[1])))
        except OSError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
