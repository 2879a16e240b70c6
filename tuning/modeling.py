"""The model a run trains: the base loaded as its method needs, wrapped by peft for adapter methods.

LoRA and prefix/prompt tuning load the base in fp32 and freeze it; QLoRA loads it as NF4 through
bitsandbytes (fp32 compute on CPU, where bf16 compute made a step ~11x slower than plain LoRA; bf16
compute with double quantisation on CUDA) and prepares it with `prepare_model_for_kbit_training`;
full fine-tuning trains every weight. `init_adapter` starts from a saved LoRA adapter instead of a
fresh one (a behaviour stacked on the served grounded-QA adapter). Shared by both trainers, so
their adapters are the same.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .config import TrainConfig
from .errors import TuningError


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise TuningError("--device cuda was asked for but CUDA is not available; use --device cpu")
    return device


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise TuningError(f"cannot load the tokenizer of {path!r}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out; any id will do
    return tokenizer


def _quantization_kwargs(quantization: str, device: str) -> dict[str, Any]:
    import torch

    if quantization == "none":
        return {"dtype": torch.float32}
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TuningError(f"--quantization {quantization} needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True), "dtype": torch.float32}
    on_cuda = device.startswith("cuda")
    compute = torch.bfloat16 if on_cuda else torch.float32
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                             bnb_4bit_compute_dtype=compute, bnb_4bit_use_double_quant=on_cuda)
    return {"quantization_config": bnb, "dtype": compute}


def load_base(config: TrainConfig, device: str) -> Any:
    """The base model on `device`, quantised as config.quantization says."""
    from transformers import AutoModelForCausalLM

    kwargs = _quantization_kwargs(config.quantization, device)
    try:
        model = AutoModelForCausalLM.from_pretrained(config.model, device_map={"": device}, **kwargs)
    except OSError as exc:
        raise TuningError(f"cannot load the base model {config.model!r}: {exc}") from exc
    model.config.use_cache = False  # the KV cache is for generation; training only wastes memory on it
    return model


def peft_config(config: TrainConfig) -> Any:
    """The peft config of an adapter method (lora, qlora, prefix, prompt)."""
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType

    if config.method in ("lora", "qlora"):
        targets: str | list[str] = config.target_modules
        if targets != "all-linear":
            targets = [t.strip() for t in config.target_modules.split(",") if t.strip()]
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
                          lora_dropout=config.lora_dropout, target_modules=targets)
    if config.method == "prefix":
        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens)
    return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens)


def _continued(config: TrainConfig) -> Any:
    """The saved adapter's own config, with this run's dropout (its speed is this run's choice)."""
    from peft import PeftConfig

    saved = PeftConfig.from_pretrained(str(config.init_adapter))
    if hasattr(saved, "lora_dropout"):
        saved.lora_dropout = config.lora_dropout
    return saved


def build_model(config: TrainConfig, device: str) -> Any:
    """The trainable model of `config`: a peft model, or the base itself for full fine-tuning."""
    import torch

    torch.manual_seed(config.seed)  # the adapter's initial weights
    model = load_base(config, device)
    if config.quantization != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if config.peft:
            model.enable_input_require_grads()
    if not config.peft:
        model.train()
        return model
    from peft import PeftModel, get_peft_model

    try:
        if config.init_adapter:  # train a served adapter further (its own rank and targets)
            model = PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True,
                                              config=_continued(config))
        else:
            model = get_peft_model(model, peft_config(config))
    except (ValueError, TypeError, NotImplementedError, OSError) as exc:
        raise TuningError(f"peft cannot apply --method {config.method} to {config.model}: {exc}") from exc
    model.train()
    return model


def trainable_parameters(model: Any) -> list[tuple[str, Any]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]
