"""NativeTrainer: a plain PyTorch training loop, lean enough for CPUs.

AdamW over the trainable parameters only, linear warmup then linear decay, gradient accumulation with
the loss normalised by the supervised tokens of the whole accumulated step, length-bucketed batches
padded per batch, eval loss on the validation split, early stopping, checkpoints and resume. For LoRA,
QLoRA and full tuning the loss is computed from the hidden states of the supervised positions only, so
the vocabulary-sized logits (49k x tokens, in fp32, with their gradient) exist for the answer tokens
alone; prefix and prompt tuning go through peft's forward with labels.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import checkpoints
from .base import (
    CHECKPOINTS_DIR,
    PreparedData,
    Progress,
    ProgressFn,
    RunLog,
    StopFn,
    TrainResult,
    configure_threads,
    eta,
    peak_rss_mb,
    prepare_data,
    save_adapter,
)
from .batching import collate, collate_packed, eval_batches, plan_batches, supervised_targets
from .config import TrainConfig
from .modeling import build_model, load_tokenizer, resolve_device, trainable_parameters
from .sizing import parse_duration
from .tokenization import IGNORE, TokenizedExample

FAST_LOSS_METHODS = ("lora", "qlora", "full")
BUDGET_WARMUP_STEPS = 3


def loss_sum(model: Any, batch: dict[str, Any], fast: bool) -> Any:
    """Summed cross-entropy over the batch's supervised (shifted) targets."""
    import torch.nn.functional as F

    labels = batch["labels"]
    if not fast:
        targets = int((labels[:, 1:] != IGNORE).sum())
        return model(**batch, use_cache=False).loss * targets
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(base, base.base_model_prefix)
    masks = {k: batch[k] for k in ("attention_mask", "position_ids") if k in batch}
    # no cache: with one, transformers does not read packed rows' restarting positions as a mask
    hidden = body(input_ids=batch["input_ids"], use_cache=False, **masks).last_hidden_state
    shifted = labels[:, 1:]
    keep = shifted != IGNORE
    logits = base.get_output_embeddings()(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, shifted[keep], reduction="sum")


def can_use_fast_loss(model: Any, config: TrainConfig) -> bool:
    """The hidden-state path skips the model's own head logic, so only where that is a plain matmul."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    plain_head = getattr(cfg, "final_logit_softcapping", None) is None and not hasattr(cfg, "logit_scale")
    prefix = getattr(base, "base_model_prefix", "")
    has_parts = hasattr(base, prefix) and base.get_output_embeddings() is not None
    return config.method in FAST_LOSS_METHODS and plain_head and has_parts


class NativeTrainer:
    """Trainer implemented as a plain PyTorch loop (see the module docstring)."""

    def train(self, config: TrainConfig, on_progress: ProgressFn | None = None,
              should_stop: StopFn | None = None) -> TrainResult:
        configure_threads(config)
        device = resolve_device(config.device)
        tokenizer = load_tokenizer(config.model)
        data = prepare_data(config, tokenizer)
        model = build_model(config, device)
        return _Loop(config, model, tokenizer, data, device).run(on_progress, should_stop)


def _schedule(warmup: int, total: Callable[[], int]) -> Any:
    """Linear warmup then linear decay to zero at `total()` steps (read at each step: a run fitted
    to its time budget ends sooner, and still decays to zero)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total() - step) / max(1, total() - warmup))

    return factor


class _Loop:
    """One run's state: model, optimiser, the batch plan and the counters."""

    def __init__(self, config: TrainConfig, model: Any, tokenizer: Any, data: PreparedData,
                 device: str) -> None:

        self.config, self.model, self.tokenizer = config, model, tokenizer
        self.data, self.device = data, device
        self.pad_id = int(tokenizer.pad_token_id)
        self.lengths = [len(e.input_ids) for e in data.train]
        self.n_batches = math.ceil(len(data.train) / config.batch_size)
        self.micro_limit = self.n_batches * config.epochs if config.max_steps is None else math.inf
        self.total = config.max_steps or math.ceil(self.n_batches * config.epochs / config.grad_accum)
        self.optimizer, self.scheduler = self._make_optimizer(
            _schedule(int(self.total * config.warmup_ratio), lambda: self.total))
        self.budget_s = parse_duration(config.time_budget) if config.time_budget else None
        self._rate_from: tuple[int, float] | None = None  # (step, seconds) the rate is measured from
        self.fast = self._uses_fast_loss()
        self.last_lr = config.lr
        self.ckpt_root = Path(config.output_dir) / CHECKPOINTS_DIR
        self.state = checkpoints.LoopState()
        self._plans: dict[int, list[list[int]]] = {}
        self.best_weights: dict[str, Any] | None = None
        self._resume()
        self.log = RunLog(Path(config.output_dir), resume=self.state.step > 0)

    def _make_optimizer(self, factor: Callable[[int], float]) -> tuple[Any, Any]:
        """The optimiser over the trainable weights and its schedule (lr x factor(step))."""
        import torch

        params = [p for _, p in trainable_parameters(self.model)]
        optimizer = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _uses_fast_loss(self) -> bool:
        return can_use_fast_loss(self.model, self.config)

    def _loss(self, batch: dict[str, Any]) -> Any:
        return loss_sum(self.model, batch, self.fast)

    def _apply_gradients(self) -> None:
        """Clip, step the optimiser and the schedule, clear the gradients."""
        import torch

        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.optimizer.step()
        self.last_lr = float(self.scheduler.get_last_lr()[0])
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _save(self) -> Path:
        return save_adapter(self.model, self.tokenizer, self.config)

    def _resume(self) -> None:
        found = checkpoints.latest(self.ckpt_root) if self.config.resume else None
        if found is not None:
            self.state = checkpoints.load(found, self.model, self.optimizer, self.scheduler)

    def _autocast(self) -> Any:
        import torch

        if self.device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _micro_batch(self, k: int) -> list[TokenizedExample]:
        epoch, index = divmod(k, self.n_batches)
        if epoch not in self._plans:
            self._plans = {epoch: plan_batches(self.lengths, self.config.batch_size, self.config.seed, epoch)}
        return [self.data.train[i] for i in self._plans[epoch][index]]

    def _to_device(self, examples: list[TokenizedExample]) -> dict[str, Any]:
        batch = collate_packed(examples, self.pad_id, self.config.max_length) \
            if self.config.packing else collate(examples, self.pad_id)
        return {k: v.to(self.device) for k, v in batch.items()}

    def _step(self, should_stop: StopFn | None = None) -> tuple[float, int] | None:
        """One optimiser step over grad_accum micro-batches: (mean loss per target token, tokens);
        None when `should_stop` says so between micro-batches (the weights are then untouched, so
        the checkpoint taken next is that of the last whole step)."""

        first = self.state.step * self.config.grad_accum
        ks = [k for k in range(first, first + self.config.grad_accum) if k < self.micro_limit]
        batches = [self._micro_batch(k) for k in ks]
        targets = max(1, sum(supervised_targets(b) for b in batches))
        total, tokens = 0.0, 0
        for n, examples in enumerate(batches):
            if n and should_stop is not None and should_stop():
                self.optimizer.zero_grad(set_to_none=True)
                return None
            batch = self._to_device(examples)
            with self._autocast():
                loss = self._loss(batch)
            (loss / targets).backward()
            total += float(loss.detach())
            tokens += sum(len(e.input_ids) for e in examples)
        self._apply_gradients()
        return total / targets, tokens

    def evaluate(self) -> float | None:
        """Mean loss per supervised token of the validation split (None without one)."""
        import torch

        if not self.data.val:
            return None
        self.model.eval()
        total, targets = 0.0, 0
        lengths = [len(e.input_ids) for e in self.data.val]
        with torch.no_grad(), self._autocast():
            for idx in eval_batches(lengths, self.config.batch_size * 2):
                examples = [self.data.val[i] for i in idx]
                total += float(self._loss(self._to_device(examples)))
                targets += supervised_targets(examples)
        self.model.train()
        return total / max(1, targets)

    def run(self, on_progress: ProgressFn | None, should_stop: StopFn | None) -> TrainResult:
        stopped_early = cancelled = False
        eval_step = -1
        while self.state.step < self.total:
            if should_stop is not None and should_stop() or not self._timed_step(should_stop):
                cancelled = True
                break
            self._fit_budget()
            if self._eval_due():
                self.state.last_eval, eval_step = self.evaluate(), self.state.step
                stopped_early = self._no_longer_improving()
            self._report(on_progress)
            if stopped_early:
                break
            if self.config.save_steps and self.state.step % self.config.save_steps == 0:
                self._checkpoint()
        if cancelled:
            self._checkpoint()
            return self._finish(cancelled=True)
        if eval_step != self.state.step:
            self.state.last_eval = self.evaluate()
            self._no_longer_improving()
        self._restore_best()
        return self._finish(stopped_early=stopped_early)

    def _timed_step(self, should_stop: StopFn | None) -> bool:
        """One step, counted; False when it was stopped part-way."""
        started = time.perf_counter()
        done = self._step(should_stop)
        if done is None:
            return False
        loss, tokens = done
        self.state.step += 1
        self.state.last_loss = loss
        self.state.train_tokens += tokens
        self.state.seconds += time.perf_counter() - started
        return True

    def _fit_budget(self) -> None:
        """With a time budget and planned steps, fit the steps to what the measured speed affords
        in the time left, never more than planned, or than `budget_max_steps` when the plan allowed
        more (it planned at an assumed speed). The rate is measured from the first step on (that
        step pays for warm-up) over at least BUDGET_WARMUP_STEPS steps. Steps vary in length
        (batches of like lengths), so the count is refitted after every step: it shrinks as soon
        as the rest would overrun the budget, and grows only by a margin (not at every wobble)."""
        st = self.state
        if self.budget_s is None or self.config.max_steps is None:
            return
        if self._rate_from is None:
            self._rate_from = (st.step, st.seconds)
            return
        steps, seconds = st.step - self._rate_from[0], st.seconds - self._rate_from[1]
        if steps < BUDGET_WARMUP_STEPS or seconds <= 0:
            return
        per_step = seconds / steps
        most = max(self.config.max_steps, self.config.budget_max_steps or 0)
        fitted = max(st.step, min(most, st.step + int((self.budget_s - st.seconds) / per_step)))
        back_to_plan = fitted == self.config.max_steps != self.total
        change = abs(fitted - self.total) >= max(3, 0.1 * self.total)
        if back_to_plan or change or fitted < self.total:
            if back_to_plan or change:
                self.log.note(f"budget: {self.total} -> {fitted} steps to fit "
                              f"{self.budget_s / 60:g} min at {per_step:.1f} s a step")
            self.total = fitted

    def _eval_due(self) -> bool:
        if not self.data.val:
            return False
        if self.config.eval_steps:
            return self.state.step % self.config.eval_steps == 0
        accum = self.config.grad_accum
        return (self.state.step * accum) // self.n_batches > ((self.state.step - 1) * accum) // self.n_batches

    def _no_longer_improving(self) -> bool:
        """Track the best eval loss; True once `patience` evals in a row have not improved on it."""
        current, patience = self.state.last_eval, self.config.early_stopping_patience
        if current is None:
            return False
        if self.state.best_eval is None or current < self.state.best_eval - 1e-4:
            self.state.best_eval, self.state.bad_evals = current, 0
            if patience:
                self.best_weights = {n: p.detach().to("cpu", copy=True)
                                     for n, p in trainable_parameters(self.model)}
            return False
        self.state.bad_evals += 1
        return bool(patience) and self.state.bad_evals >= patience

    def _restore_best(self) -> None:
        """With early stopping, the adapter saved is the one with the best eval loss."""
        import torch

        if self.best_weights is None:
            return
        params = dict(trainable_parameters(self.model))
        with torch.no_grad():
            for name, tensor in self.best_weights.items():
                params[name].copy_(tensor.to(params[name].device))
        self.state.last_eval = self.state.best_eval

    def _progress(self) -> Progress:
        st = self.state
        return Progress(step=st.step, total_steps=self.total, loss=st.last_loss, eval_loss=st.last_eval,
                        tokens_per_s=st.train_tokens / st.seconds if st.seconds else 0.0,
                        eta_s=eta(st.step, self.total, st.seconds),
                        epoch=st.step * self.config.grad_accum / self.n_batches)

    def _report(self, on_progress: ProgressFn | None) -> None:
        progress = self._progress()
        if self.state.step % self.config.logging_steps == 0 or self.state.step == self.total:
            self.log.write(progress, lr=self.last_lr)
        if on_progress is not None:
            on_progress(progress)

    def _checkpoint(self) -> None:
        checkpoints.save(self.ckpt_root, self.model, self.optimizer, self.scheduler, self.state,
                         keep=self.config.save_total_limit)

    def _finish(self, stopped_early: bool = False, cancelled: bool = False) -> TrainResult:
        adapter = None if cancelled else self._save()
        st = self.state
        result = TrainResult(
            output_dir=Path(self.config.output_dir), adapter_dir=adapter, steps=st.step,
            train_loss=st.last_loss, eval_loss=st.last_eval, train_tokens=st.train_tokens,
            seconds=st.seconds, tokens_per_s=st.train_tokens / st.seconds if st.seconds else 0.0,
            peak_rss_mb=peak_rss_mb(), stopped_early=stopped_early, cancelled=cancelled,
            data={**self.data.summary(), "fast_loss": self.fast})
        self.log.finish(result, self.config)
        return result
