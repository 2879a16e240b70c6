"""HFTrainer: the same run through `transformers.Trainer`, for its ecosystem (callbacks, DeepSpeed, …).

Data, model and adapter output are shared with NativeTrainer (tuning.base, tuning.modeling); this file
only maps TrainConfig onto TrainingArguments, pads per batch in a collator, groups examples by length,
and bridges Trainer's callbacks to `on_progress` / `should_stop`. Checkpoints are Trainer's own
(output_dir/checkpoints/checkpoint-N) and `resume=True` passes the latest to `resume_from_checkpoint`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
from .batching import collate
from .config import TrainConfig
from .modeling import build_model, load_tokenizer, resolve_device
from .tokenization import TokenizedExample


class _Collator:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        examples = [TokenizedExample(f["input_ids"], f["labels"]) for f in features]
        return collate(examples, self.pad_id)


def _as_dataset(examples: list[TokenizedExample]) -> list[dict[str, list[int]]]:
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]


def _arguments(config: TrainConfig, has_val: bool, device: str) -> Any:
    from transformers import TrainingArguments

    eval_strategy = ("steps" if config.eval_steps else "epoch") if has_val else "no"
    save_strategy = "steps" if config.save_steps else "no"
    if config.early_stopping_patience:  # Trainer keeps the best model only from saved checkpoints
        save_strategy = eval_strategy
    return TrainingArguments(
        output_dir=str(Path(config.output_dir) / CHECKPOINTS_DIR),
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size * 2,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.lr,
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        lr_scheduler_type="linear", warmup_steps=config.warmup_ratio,
        logging_steps=config.logging_steps, eval_strategy=eval_strategy,
        eval_steps=config.eval_steps or None, save_strategy=save_strategy,
        save_steps=config.eval_steps if config.early_stopping_patience else (config.save_steps or 500),
        save_total_limit=config.save_total_limit, load_best_model_at_end=bool(config.early_stopping_patience),
        metric_for_best_model="eval_loss", greater_is_better=False, seed=config.seed, data_seed=config.seed,
        report_to="none", use_cpu=device == "cpu", disable_tqdm=True, remove_unused_columns=False,
        train_sampling_strategy="group_by_length", include_num_input_tokens_seen="non_padding",
        bf16=device.startswith("cuda") and config.quantization == "none",
    )


def _bridge(config: TrainConfig, log: RunLog, on_progress: ProgressFn | None,
            should_stop: StopFn | None) -> Any:
    from transformers import TrainerCallback

    class Bridge(TrainerCallback):  # type: ignore[misc]
        """Trainer events → training.log, on_progress and should_stop."""

        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.loss: float | None = None
            self.eval_loss: float | None = None
            self.cancelled = False
            self.eval_step = -1

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if should_stop is not None and should_stop():
                self.cancelled = True
                control.should_training_stop = True
                control.should_save = True

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            logs = logs or {}
            if "loss" not in logs and "eval_loss" not in logs:
                return  # the end-of-training summary
            self.loss = logs.get("loss", self.loss)
            if "eval_loss" in logs:
                self.eval_loss, self.eval_step = float(logs["eval_loss"]), state.global_step
            seconds = time.perf_counter() - self.started
            progress = Progress(
                step=state.global_step, total_steps=state.max_steps, loss=self.loss,
                eval_loss=self.eval_loss, tokens_per_s=state.num_input_tokens_seen / max(seconds, 1e-9),
                eta_s=eta(state.global_step, state.max_steps, seconds), epoch=float(state.epoch or 0.0))
            log.write(progress, lr=logs.get("learning_rate"))
            if on_progress is not None:
                on_progress(progress)

    return Bridge()


class HFTrainer:
    """Trainer implemented with transformers.Trainer (see the module docstring)."""

    def train(self, config: TrainConfig, on_progress: ProgressFn | None = None,
              should_stop: StopFn | None = None) -> TrainResult:
        configure_threads(config)
        device = resolve_device(config.device)
        tokenizer = load_tokenizer(config.model)
        data = prepare_data(config, tokenizer)
        model = build_model(config, device)
        return self._run(config, model, tokenizer, data, device, on_progress, should_stop)

    def _run(self, config: TrainConfig, model: Any, tokenizer: Any, data: PreparedData, device: str,
             on_progress: ProgressFn | None, should_stop: StopFn | None) -> TrainResult:
        import transformers
        from transformers.trainer_utils import get_last_checkpoint

        ckpt_root = Path(config.output_dir) / CHECKPOINTS_DIR
        resume_from = get_last_checkpoint(str(ckpt_root)) if config.resume and ckpt_root.is_dir() else None
        log = RunLog(Path(config.output_dir), resume=resume_from is not None)
        bridge = _bridge(config, log, on_progress, should_stop)
        callbacks = [bridge]
        if config.early_stopping_patience:
            callbacks.append(transformers.EarlyStoppingCallback(config.early_stopping_patience))
        trainer = transformers.Trainer(
            model=model, args=_arguments(config, bool(data.val), device),
            train_dataset=_as_dataset(data.train), eval_dataset=_as_dataset(data.val) or None,
            data_collator=_Collator(int(tokenizer.pad_token_id)), processing_class=tokenizer,
            callbacks=callbacks)
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)  # ours writes the log
        started = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=resume_from)
        seconds = time.perf_counter() - started
        eval_loss = None
        if data.val and not bridge.cancelled and bridge.eval_step != trainer.state.global_step:
            eval_loss = float(trainer.evaluate()["eval_loss"])
        return self._finish(config, trainer, output, bridge, data, seconds, eval_loss, log)

    def _finish(self, config: TrainConfig, trainer: Any, output: Any, bridge: Any, data: PreparedData,
                seconds: float, eval_loss: float | None, log: RunLog) -> TrainResult:
        state = trainer.state
        tokens = int(state.num_input_tokens_seen)
        adapter = None if bridge.cancelled else save_adapter(trainer.model, trainer.processing_class, config)
        stopped_early = config.early_stopping_patience > 0 and state.global_step < state.max_steps
        result = TrainResult(
            output_dir=Path(config.output_dir), adapter_dir=adapter, steps=state.global_step,
            train_loss=bridge.loss if bridge.loss is not None else float(output.training_loss),
            eval_loss=eval_loss if eval_loss is not None else bridge.eval_loss, train_tokens=tokens,
            seconds=seconds, tokens_per_s=tokens / seconds if seconds else 0.0, peak_rss_mb=peak_rss_mb(),
            stopped_early=stopped_early and not bridge.cancelled, cancelled=bridge.cancelled,
            data=data.summary())
        log.finish(result, config)
        return result
