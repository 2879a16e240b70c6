"""Checkpoints of the native trainer: output_dir/checkpoints/step-N with everything a resume needs.

A checkpoint holds the trainable weights (trainable.safetensors, by parameter name, so it works for
every method), the optimiser and scheduler states, the RNG states and a small JSON of counters. It is
written under a temporary name and renamed, so a crash never leaves a half-written checkpoint that a
resume would pick up; only the newest `keep` are kept.
"""

from __future__ import annotations

import json
import random
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import TuningError

PREFIX = "step-"
STATE_FILE = "trainer_state.json"


@dataclass
class LoopState:
    """The counters of a training loop that a resume must restore."""

    step: int = 0
    train_tokens: int = 0
    seconds: float = 0.0
    best_eval: float | None = None
    bad_evals: int = 0
    last_loss: float | None = None
    last_eval: float | None = None


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if d.name.startswith(PREFIX) and (d / STATE_FILE).is_file()]
    return sorted(found, key=lambda d: int(d.name[len(PREFIX):]))


def latest(root: Path) -> Path | None:
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


def save(root: Path, model: Any, optimizer: Any, scheduler: Any, state: LoopState, keep: int) -> Path:
    import torch
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{state.step}"
    tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    weights = {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(weights, str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
               tmp / "optimizer.pt")
    torch.save({"python": random.getstate(), "torch": torch.get_rng_state()}, tmp / "rng.pt")
    (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2) + "\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: Path, model: Any, optimizer: Any, scheduler: Any) -> LoopState:
    """Restore weights, optimiser, scheduler and RNG from `path`; returns the loop's counters."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    if missing or any(n not in params for n in weights):
        raise TuningError(f"{path} was written by a run with other trainable weights (e.g. "
                          f"{(missing or list(weights))[0]!r}); resume with the same config or start over")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor.to(params[name].device))
    opt = torch.load(path / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    rng = torch.load(path / "rng.pt", weights_only=False)
    random.setstate(rng["python"])
    torch.set_rng_state(rng["torch"])
    return LoopState(**json.loads((path / STATE_FILE).read_text()))
