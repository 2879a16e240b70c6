"""Runs sized to the data: how many steps, what batch and learning rate a job gets when it names none.

A behaviour tune with the library's fixed defaults (batch 2 x 4, lr 2e-4, one epoch) runs a handful
of optimiser steps on a 120-example dataset and learns nothing. `plan_run` looks at the data instead:
the number of training examples and their token lengths, the rate this machine trains at (tokens/s of
the last jobs, else an assumed rate) and a time budget (10 minutes unless the job says otherwise),
and picks an effective batch that fits the data, enough passes over it to learn, and the learning
rate that suits LoRA on the model's size. Options the job sets itself are kept as given. The plan
says what it expects (steps, tokens, minutes) and warns when the run is unlikely to learn.

`verdict` is the one line a finished job ends with: did the behaviour take?
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import InvalidConfig

DEFAULT_BUDGET_S = 600.0
# bench.train's LoRA rate on a 2-core CPU, used until a job has run on this machine
ASSUMED_TOKENS_PER_S = 90.0
# Measured on SmolLM2-135M (README "Runs sized to the data"): a format learned from 100-300
# examples takes about this many optimiser steps at the planned batch and learning rate.
MIN_STEPS = 30
TARGET_EPOCHS = 3.0
LEARNED_LOSS = 0.8  # mean loss per answer token at the end of a run that took its behaviour
PLANNED = ("batch_size", "grad_accum", "lr", "max_steps")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds in "90s", "10m", "1.5h" or a bare number of seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise InvalidConfig(f"time_budget {text!r} must be a duration such as 600s, 10m or 1h")
    seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise InvalidConfig(f"time_budget {text!r} must be more than zero")
    return seconds


@dataclass(frozen=True)
class RunPlan:
    """What a job will run: its steps, batch and learning rate, and what that should cost."""

    examples: int
    mean_tokens: float
    batch_size: int
    grad_accum: int
    lr: float
    steps: int
    epochs: float
    tokens: int
    tokens_per_s: float
    rate_source: str
    minutes: float
    budget_minutes: float | None
    chosen: list[str] = field(default_factory=list)  # the options this plan set (the rest were given)
    warnings: list[str] = field(default_factory=list)
    stacked_on: str | None = None  # the served adapter the run starts from
    init_adapter: str | None = None  # its directory
    mixed: int = 0  # examples mixed in (a mix dataset, or the stacked adapter's keep set) among `examples`
    mix_from: str | None = None  # where they come from, in words
    keep_set: str | None = None  # the stacked adapter's keep set, when that is what is mixed in
    keep_share: float | None = None  # the keep set's share of the split, when the job set none
    wanted_steps: int | None = None  # what the data asks for, when the budget at the planned rate cut it

    def overrides(self) -> dict[str, Any]:
        """The TrainConfig options the plan sets (never one the job gave itself)."""
        values = {"batch_size": self.batch_size, "grad_accum": self.grad_accum, "lr": self.lr,
                  "max_steps": self.steps}
        out: dict[str, Any] = {k: values[k] for k in self.chosen if k in values}
        if self.budget_minutes is not None and "max_steps" in self.chosen:
            out["time_budget"] = f"{round(self.budget_minutes * 60)}s"
            if self.wanted_steps is not None:  # more, if the measured speed affords them
                out["budget_max_steps"] = self.wanted_steps
        if self.init_adapter is not None:
            out["init_adapter"] = self.init_adapter
        if self.keep_set is not None:
            out["mix_path"] = self.keep_set
            if self.keep_share is not None:
                out["mix_share"] = self.keep_share
        return out

    def line(self) -> str:
        """The plan in one line, for logs and the CLI."""
        batch = self.batch_size * self.grad_accum
        budget = f" (budget {self.budget_minutes:g} min)" if self.budget_minutes else ""
        mixed = (f", {self.mixed} of them mixed in from {self.mix_from or 'the mix dataset'}"
                 if self.mixed else "")
        stacked = f", starting from the served adapter {self.stacked_on}" if self.stacked_on else ""
        more = f" (up to {self.wanted_steps} if faster)" if self.wanted_steps else ""
        return (f"plan: {self.steps} steps{more} x {batch} examples ({self.epochs:.1f} epochs of "
                f"{self.examples}{mixed}), lr {self.lr:g}{stacked}, about {self.tokens:,} tokens, "
                f"~{self.minutes:.1f} min at {self.tokens_per_s:.0f} tokens/s {self.rate_source}{budget}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_lr(method: str, params: int | None) -> float:
    """LoRA on a small model wants a large step; full tuning a small one."""
    if method == "full":
        return 2e-5
    return 1e-3 if params is not None and params < 1_000_000_000 else 2e-4


def effective_batch(examples: int) -> int:
    """Small data, small batches (more updates per epoch); larger data, up to 16."""
    if examples <= 200:
        return 4
    return 8 if examples <= 2000 else 16


def plan_run(lengths: Sequence[int], given: Mapping[str, Any], method: str = "lora",
             params: int | None = None, tokens_per_s: float | None = None,
             rate_source: str = "", mixed: int = 0) -> RunPlan:
    """The run for training examples of `lengths` tokens, keeping every option in `given` (the
    job's own TrainConfig options: an explicit max_steps, epochs, batch or lr is never changed).
    `mixed` of the examples were mixed in: the batch is sized to the job's own examples, so that
    mixing does not halve the updates the behaviour gets."""
    if not lengths:
        raise ValueError("plan_run needs at least one training example")
    n, mean = len(lengths), sum(lengths) / len(lengths)
    rate = tokens_per_s or ASSUMED_TOKENS_PER_S
    source = rate_source or ("(measured)" if tokens_per_s else "(assumed: no job has run here yet)")
    chosen = [k for k in PLANNED if k not in given]
    wanted_steps = None
    own = max(1, n - mixed)
    micro = int(given.get("batch_size", min(4, effective_batch(own))))
    accum = int(given.get("grad_accum", max(1, effective_batch(own) // micro)))
    per_step = micro * accum
    lr = float(given.get("lr", default_lr(method, params)))
    steps_per_epoch = math.ceil(math.ceil(n / micro) / accum)
    budget = parse_duration(given["time_budget"]) if given.get("time_budget") else None
    if "max_steps" in given:
        steps = int(given["max_steps"])
    elif "epochs" in given:
        steps = steps_per_epoch * int(given["epochs"])
        chosen.remove("max_steps")
    else:
        budget = budget or DEFAULT_BUDGET_S
        wanted = max(MIN_STEPS, math.ceil(TARGET_EPOCHS * n / per_step))
        affordable = max(1, int(budget * rate / (per_step * mean)))
        steps = min(wanted, affordable)
        wanted_steps = wanted if wanted > steps else None
    tokens = round(steps * per_step * mean)
    plan = RunPlan(examples=n, mean_tokens=round(mean, 1), batch_size=micro, grad_accum=accum,
                   lr=lr, steps=steps, epochs=round(steps * per_step / n, 2), tokens=tokens,
                   tokens_per_s=round(rate, 1), rate_source=source,
                   minutes=round(tokens / rate / 60, 1),
                   budget_minutes=round(budget / 60, 2) if budget else None, chosen=chosen,
                   wanted_steps=wanted_steps)
    return _with_warnings(plan, method)


def _with_warnings(plan: RunPlan, method: str) -> RunPlan:
    warnings = []
    if plan.steps < MIN_STEPS:
        why = (f"the budget of {plan.budget_minutes:g} min affords only {plan.steps}"
               if plan.budget_minutes and "max_steps" in plan.chosen else f"only {plan.steps} planned")
        warnings.append(f"unlikely to learn: {why} optimiser steps; a behaviour usually needs "
                        f"{MIN_STEPS} or more (raise time_budget or max_steps, or shorten the examples)")
    if plan.epochs < 1:
        warnings.append(f"the run sees only {plan.epochs:.0%} of the training data")
    if method in ("lora", "qlora") and plan.lr < 5e-5:
        warnings.append(f"lr {plan.lr:g} is low for LoRA; an adapter this small learns slowly below 1e-4")
    if plan.budget_minutes and plan.minutes > plan.budget_minutes * 1.2:
        warnings.append(f"expected {plan.minutes:.1f} min, over the {plan.budget_minutes:g} min budget")
    return RunPlan(**{**asdict(plan), "warnings": warnings})


def verdict(train: Mapping[str, Any], gate: Mapping[str, Any] | None) -> str:
    """One line: did the behaviour take? From the gate's adherence when it ran checks, else from
    the loss at the end of training."""
    gate = gate or {}
    base, tuned = (gate.get(k, {}).get("adherence") for k in ("base", "tuned"))
    if tuned is not None:
        took = tuned >= 0.9 and (base is None or tuned > base)
        n = gate.get("prompts_answered", gate.get("prompts"))
        return (f"behaviour {'took' if took else 'did not take'}: adherence {base:.2f} -> "
                f"{tuned:.2f} on {n} held-out prompts")
    loss = train.get("eval_loss") if train.get("eval_loss") is not None else train.get("train_loss")
    if loss is None:
        return "behaviour unknown: no loss was recorded and the gate ran no checks"
    if loss > LEARNED_LOSS:
        return (f"behaviour probably did not take: loss still {loss:.2f} at the end (a run that "
                f"learned its format ends below {LEARNED_LOSS}); train longer or check the data")
    return f"behaviour probably took: loss {loss:.2f} at the end (declare a check to measure it)"
