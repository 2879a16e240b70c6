"""The serving model: one base generator, loaded on first use, and the adapters served beside it.

Adapters come from an `AdapterRegistry`; the active one (the registry's `active.json`, shared by
every process on the data dir) answers requests that name none. An adapter is checked against the
serving base and tokenizer before it is served, and loaded onto the generator beside the base
weights (never by reloading the base) when first needed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .adapter_registry import AdapterRecord, AdapterRegistry
from .adapters import BASE, PACKAGED_ADAPTERS
from .errors import AdapterError, AdapterMismatch, AdapterNotFound, GenerationError
from .generator import AdapterHost, Generator, StatsListener, StatsSource

log = logging.getLogger("ragtune")

SERVABLE_METHODS = ("lora", "qlora")


class ServingModel:
    """`base_path` gives the base model's directory (called when first needed: resolving it may
    import the model); `quantization` and `device` say how to load it; `max_batch` answers decode
    together, with `waiting` more queued (generation/batching.py). A `generator` given here is
    served as it is (tests, or a caller that loaded its own)."""

    def __init__(self, adapters: AdapterRegistry, base_path: Callable[[], str],
                 quantization: str = "auto", device: str = "auto",
                 generator: Generator | None = None, max_batch: int = 8,
                 waiting: int = 32) -> None:
        self.adapters = adapters
        self.max_batch = max_batch  # answers decoded together; 0: one generate call at a time
        self.waiting = waiting
        self._base_path = base_path
        self.quantization = quantization
        self.device = device
        self._generator = generator
        self._gen_lock = threading.Lock()
        self._adapter_lock = threading.Lock()
        self._loaded: dict[str, str] = {}  # name -> created_at of the copy loaded
        self._tokenizer: Any = None
        self._listeners: list[StatsListener] = []

    @property
    def base_path(self) -> str:
        return self._base_path()

    @property
    def generator(self) -> Generator:
        """The base generator, loaded on first use (once, whichever thread asks first)."""
        with self._gen_lock:
            if self._generator is None:
                from .generator import HFGenerator
                from .loading import LoadConfig, load_model, resolve_quantization

                path = self.base_path
                mode, why = resolve_quantization(self.quantization, path, self.device)
                log.info("loading generator %s as %s (%s)", path, mode, why)
                loaded = load_model(path, LoadConfig(quantization=mode, device=self.device))
                self._generator = HFGenerator(loaded, max_batch=self.max_batch,
                                              waiting=self.waiting)
                for listener in self._listeners:
                    self._generator.observe(listener)
                log.info("generator %s loaded (%s on %s): %.0f MB in memory, %.1f s, context %d",
                         loaded.name, loaded.quantization, loaded.device,
                         loaded.footprint_bytes / 1e6, loaded.load_seconds, loaded.context_length)
            return self._generator

    def observe(self, listener: StatsListener) -> None:
        """Call `listener` with the stats of every generation served from now on (by a generator
        that reports them: a StatsSource), whether or not the model is loaded yet."""
        with self._gen_lock:
            self._listeners.append(listener)
            if isinstance(self._generator, StatsSource):
                self._generator.observe(listener)

    def queue_state(self) -> tuple[int, int]:
        """(generations waiting for a batch slot, generations being written); (0, 0) before the
        model loads or where it is not batched."""
        engine = getattr(self._generator, "engine", None)
        return (engine.waiting, engine.running) if engine is not None else (0, 0)

    @property
    def loaded(self) -> bool:
        return self._generator is not None

    def adapter_for(self, requested: str | None = None) -> str | None:
        """The adapter that answers a request: `requested` ("base": none), else the active one.

        None means the base model. A requested name must be registered (AdapterNotFound now, not
        halfway through a stream); compatibility is checked when it is loaded.
        """
        name = self.adapters.active() if requested is None else requested
        if name is None or name == BASE:
            return None
        self.adapters.get(name)
        return name

    def generator_for(self, adapter: str | None) -> Generator:
        """The generator, with `adapter` (if any) loaded onto it beside the base weights."""
        if adapter is not None and not self.loaded:
            self.check_servable(adapter)  # a wrong adapter is refused before the base loads
        gen = self.generator
        if adapter is not None:
            self._load(gen, adapter)
        return gen

    def loaded_adapters(self) -> tuple[str, ...]:
        gen = self._generator
        return gen.adapters if isinstance(gen, AdapterHost) else ()

    def check_servable(self, name: str) -> AdapterRecord:
        """The record of `name` if it can be served beside this base: trained on it, with its
        tokenizer, as a LoRA adapter."""
        self.adapters.get(name)  # AdapterNotFound before the base is read
        record = self.adapters.check_compatible(name, self.base_path, self._base_tokenizer())
        if record.method not in SERVABLE_METHODS:
            raise AdapterError(f"adapter {name!r} is {record.method}; only LoRA adapters can be "
                               "served beside the base (merge it, or serve it as a model)")
        return record

    def activate(self, name: str) -> AdapterRecord:
        """Serve `name` for requests that name no adapter, in this and every other process.

        Checked against the serving base and tokenizer first; loaded onto the generator now if
        the generator is loaded (else on its first request).
        """
        record = self.check_servable(name)
        if self.loaded:
            self._load(self.generator, name)
        self.adapters.set_active(name)
        return record

    def deactivate(self) -> None:
        """Serve the base model alone; loaded adapters stay loaded for requests that name them."""
        self.adapters.set_active(None)

    def install_packaged(self, default: str | None = None) -> list[str]:
        """Register the adapters shipped with ragtune (generation/packaged); on a data dir where
        no adapter was ever chosen, serve `default` if it fits the base. Returns what was done,
        for the user."""
        done = []
        shipped = PACKAGED_ADAPTERS.iterdir() if PACKAGED_ADAPTERS.is_dir() else iter(())
        for src in sorted(p for p in shipped if p.is_dir()):
            record = self.adapters.install(src)
            if record is not None:
                done.append(f"installed adapter {record.name}")
        if default and self.adapters.never_chosen():
            try:
                self.activate(default)
                done.append(f"serving adapter {default} (`ragtune adapters deactivate` for the base)")
            except (AdapterNotFound, AdapterMismatch) as exc:
                done.append(f"serving the base model: {exc}")
        return done

    def merge(self, name: str, out_dir: Path) -> list[str]:
        """Fold LoRA adapter `name` into an fp32 copy of the serving base, saved in `out_dir`;
        returns warnings about how the merged model differs from base + adapter as served."""
        from .loading import resolve_quantization

        record = self.check_servable(name)
        base = self.base_path
        warnings = [w for w in [self.adapters.merge(name, base, out_dir)] if w]
        mode, _ = resolve_quantization(self.quantization, base, self.device)
        if mode in ("nf4", "int8"):
            warnings.append(
                f"the serving base is loaded {mode} (RAGTUNE_QUANTIZATION); {out_dir} holds "
                f"unquantised merged weights, and serving it {mode} quantises base and adapter "
                f"together: a different model from the {mode} base + adapter {record.name!r}")
        return warnings

    def delete(self, name: str) -> None:
        """Unregister `name` (refused while active) and unload it from the generator."""
        self.adapters.delete(name)
        with self._adapter_lock:
            gen = self._generator
            if isinstance(gen, AdapterHost) and name in gen.adapters:
                gen.remove_adapter(name)
            self._loaded.pop(name, None)

    def _load(self, gen: Generator, name: str) -> AdapterRecord:
        if not isinstance(gen, AdapterHost):
            raise AdapterError(f"the generator {gen.name!r} cannot load adapters")
        with self._adapter_lock:
            record = self.adapters.get(name)
            if name in gen.adapters and self._loaded.get(name) == record.created_at:
                return record
            record = self.check_servable(name)
            if name in gen.adapters:  # deleted and registered again under the same name
                gen.remove_adapter(name)
            gen.add_adapter(name, record.path)
            self._loaded[name] = record.created_at
            log.info("adapter %s loaded onto %s (%s)", name, gen.name, record.method)
            return record

    def _base_tokenizer(self) -> Any:
        """The serving tokenizer: the loaded generator's, else read from the base directory."""
        tokenizer = getattr(self._generator, "tokenizer", None)
        if tokenizer is not None:
            return tokenizer
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            path = self.base_path
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(path)
            except OSError as exc:  # no such directory, and no hub to fetch it from
                raise GenerationError(f"cannot read the generator's tokenizer from {path!r}: "
                                      f"{exc}") from exc
        return self._tokenizer
