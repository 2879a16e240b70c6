"""Adapters in use: LoRA adapters loaded beside a serving model's base weights, one chosen per call.

The base model is wrapped in a peft `PeftModel` when the first adapter is added; later adapters are
loaded into the same wrapper (`load_adapter`), so the base weights, fp32 or bitsandbytes 4-bit, are
loaded once and shared. `selected` picks what one generation runs: an adapter (`set_adapter`) or the
base (`disable_adapter()`). peft keeps the choice on the model, so callers must hold the model's
generation lock for the whole generation. Removing the last adapter unwraps the model again.
On a model with int4 layers (generation/int4.py) LoRA wraps them through peft's custom-module hook,
so the adapter's own matrices run in fp32 beside the 4-bit base product.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import AdapterNotLoaded, GenerationError

BASE = "base"  # the adapter name that selects the base model alone; registries refuse it as a name
# adapters shipped with ragtune, one directory each (weights + their record); README "grounded-QA"
PACKAGED_ADAPTERS = Path(__file__).with_name("packaged")


def is_base(adapter: str | None) -> bool:
    return adapter is None or adapter == BASE


def loaded_names(peft_model: Any | None) -> tuple[str, ...]:
    return tuple(peft_model.peft_config) if peft_model is not None else ()


def attach(model: Any, peft_model: Any | None, name: str, path: str | Path) -> Any:
    """The peft wrapper of `model` with adapter `name` loaded from `path` (wrapping on first use)."""
    if is_base(name):
        raise ValueError(f"{BASE!r} is reserved for the base model; name the adapter otherwise")
    if name in loaded_names(peft_model):
        raise ValueError(f"adapter {name!r} is already loaded; remove it first to reload it")
    try:
        config = _int4_aware_config(model, path)
        with warnings.catch_warnings():
            # peft names every custom module "unsupported" while wrapping it as asked
            warnings.filterwarnings("ignore", message="Unsupported layer type .*Int4Linear")
            return _load(model, peft_model, name, path, config)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise GenerationError(f"cannot load adapter {name!r} from {path}: {exc}") from exc


def _load(model: Any, peft_model: Any | None, name: str, path: str | Path, config: Any) -> Any:
    from peft import PeftModel

    if peft_model is None:
        return PeftModel.from_pretrained(model, str(path), adapter_name=name, is_trainable=False,
                                         config=config)
    if config is not None:  # added first, so load_adapter keeps it instead of reading its own
        peft_model.add_adapter(name, config)
    peft_model.load_adapter(str(path), adapter_name=name, is_trainable=False)
    return peft_model


def _int4_aware_config(model: Any, path: str | Path) -> Any | None:
    """The adapter's config with Int4Linear registered as a LoRA target when `model` has int4
    layers; None (peft reads the config itself) otherwise."""
    from .int4 import Int4Linear, peft_custom_modules

    if not any(isinstance(m, Int4Linear) for m in model.modules()):
        return None
    from peft import PeftConfig

    config = PeftConfig.from_pretrained(str(path))
    config.inference_mode = True
    config._register_custom_module(peft_custom_modules())
    return config


def detach(peft_model: Any | None, name: str) -> Any | None:
    """`peft_model` without adapter `name`; None (the bare base, unwrapped) when none is left."""
    if name not in loaded_names(peft_model):
        raise AdapterNotLoaded(f"adapter {name!r} is not loaded (loaded: "
                               f"{', '.join(loaded_names(peft_model)) or 'none'})")
    assert peft_model is not None
    if len(peft_model.peft_config) == 1:
        peft_model.unload()  # puts the original base layers back in place
        return None
    if peft_model.active_adapter == name:  # peft warns when the active one is deleted
        peft_model.set_adapter(next(n for n in peft_model.peft_config if n != name))
    peft_model.delete_adapter(name)
    return peft_model


def check_loaded(peft_model: Any | None, adapter: str | None) -> None:
    if not is_base(adapter) and adapter not in loaded_names(peft_model):
        raise AdapterNotLoaded(f"adapter {adapter!r} is not loaded on this generator (loaded: "
                               f"{', '.join(loaded_names(peft_model)) or 'none'})")


@contextmanager
def selected(model: Any, peft_model: Any | None, adapter: str | None) -> Iterator[Any]:
    """The model to generate with while `adapter` (None or BASE: the base alone) is selected."""
    check_loaded(peft_model, adapter)
    if peft_model is None:
        yield model
    elif is_base(adapter):
        with peft_model.disable_adapter():
            yield peft_model
    else:
        peft_model.set_adapter(adapter)
        yield peft_model


class Selection:
    """What the peft model runs, switched only when a different choice is asked for.

    peft switches by walking every module: on SmolLM2 with one adapter, `set_adapter` takes about
    11 ms and disabling then re-enabling the adapter layers (what `selected` does for the base)
    about 48 ms, too slow to repeat at every decode step of a 70 ms step. A generator that owns
    its model keeps one Selection, calls `apply` under the model's lock before each use, and
    `forget` after adapters are attached or detached (the state is then unknown).
    """

    _UNKNOWN = "\x00unknown"

    def __init__(self) -> None:
        self.current: str = self._UNKNOWN

    def forget(self) -> None:
        self.current = self._UNKNOWN

    def apply(self, model: Any, peft_model: Any | None, adapter: str | None) -> Any:
        """The model to run with `adapter` (None or BASE: the base alone) selected."""
        check_loaded(peft_model, adapter)
        if peft_model is None:
            return model
        want = BASE if is_base(adapter) else str(adapter)
        if want != self.current:
            if want == BASE:
                peft_model.base_model.disable_adapter_layers()
            else:
                if self.current in (BASE, self._UNKNOWN):
                    peft_model.base_model.enable_adapter_layers()
                peft_model.set_adapter(want)
            self.current = want
        return peft_model
