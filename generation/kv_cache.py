"""The KV cache the batch engine (generation/batching.py) decodes into: layers that write into a
buffer with spare room instead of concatenating at every token, and the merge that left-pads a
newly prefilled row's cache into the running batch's so every row ends at the same column.
"""

from __future__ import annotations

from typing import Any, cast


def _grow_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class GrowLayer(DynamicLayer):  # type: ignore[misc,valid-type]
        """A dynamic cache layer that writes into a buffer with spare room instead of
        concatenating at every token (a copy of the whole cache per step otherwise)."""

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            super().lazy_initialization(key_states, value_states)
            self._set(key_states[..., :0, :], value_states[..., :0, :], room=0)

        def _set(self, keys: Any, values: Any, room: int) -> None:
            import torch

            b, h, n, d = keys.shape
            self.buf_k = torch.empty((b, h, n + room, d), dtype=keys.dtype, device=keys.device)
            self.buf_v = torch.empty((b, h, n + room, values.shape[-1]), dtype=values.dtype,
                                     device=values.device)
            self.buf_k[:, :, :n] = keys
            self.buf_v[:, :, :n] = values
            self.n = n
            self.keys, self.values = self.buf_k[:, :, :n], self.buf_v[:, :, :n]

        def update(self, key_states: Any, value_states: Any, *args: Any,
                   **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            t = key_states.shape[-2]
            if self.n + t > self.buf_k.shape[-2]:
                self._set(self.keys, self.values, room=max(t, 64, self.n // 2))
            self.buf_k[:, :, self.n:self.n + t] = key_states
            self.buf_v[:, :, self.n:self.n + t] = value_states
            self.n += t
            self.keys, self.values = self.buf_k[:, :, :self.n], self.buf_v[:, :, :self.n]
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            if self.is_initialized:
                keys, values = cast(Any, self.keys), cast(Any, self.values)
                self._set(keys[indices], values[indices], room=64)

        def trim_left(self, columns: int) -> None:
            if self.is_initialized and columns > 0:
                keys, values = cast(Any, self.keys), cast(Any, self.values)
                self._set(keys[:, :, columns:], values[:, :, columns:], room=64)

    return GrowLayer


_GROW_LAYER: type | None = None


def new_cache() -> Any:
    """An empty cache of grow layers (one per model layer, made as the model writes them)."""
    global _GROW_LAYER
    from transformers.cache_utils import DynamicCache

    if _GROW_LAYER is None:
        _GROW_LAYER = _grow_layer_class()
    cache = DynamicCache()
    cache.layer_class_to_replicate = _GROW_LAYER
    return cache


def merge_caches(batch: Any, row: Any, batch_len: int, row_len: int) -> None:
    """Append `row`'s cache (one row, `row_len` columns) to `batch`'s (`batch_len` columns) in
    place, left-padding whichever is shorter so both end at the same column."""
    import torch

    width = max(batch_len, row_len)
    for mine, theirs in zip(batch.layers, row.layers, strict=True):
        keys, values = [], []
        for layer, n in ((mine, batch_len), (theirs, row_len)):
            pad = width - n
            k, v = layer.keys, layer.values
            if pad:
                k = torch.nn.functional.pad(k, (0, 0, pad, 0))
                v = torch.nn.functional.pad(v, (0, 0, pad, 0))
            keys.append(k)
            values.append(v)
        mine._set(torch.cat(keys), torch.cat(values), room=64)
