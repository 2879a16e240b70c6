"""Int4Linear on tiny random layers: packing, the kernel against a de-quantised reference, a tiny
model that generates with int4 layers, and a LoRA adapter on top of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from generation.int4 import (
    Int4Linear,
    block_rows,
    dequantize,
    is_int4_kernel_available,
    pack,
    quantize,
    quantize_model,
    unpack,
)

pytestmark = pytest.mark.skipif(not is_int4_kernel_available(),
                                reason="this torch has no CPU int4 kernels (torch>=2.6)")


def test_pack_unpack_round_trips() -> None:
    n = 3 * block_rows()  # the pack's row blocks: 32 rows with AVX2, 64 with AVX-512
    q = torch.randint(0, 16, (n, 128), generator=torch.Generator().manual_seed(0),
                      dtype=torch.int32)
    packed = pack(q)
    assert packed.dtype == torch.uint8 and packed.shape == (n, 64)
    assert torch.equal(unpack(packed, n, 128).to(torch.int32), q)


def test_weights_on_a_4bit_grid_are_kept_exactly() -> None:
    """De-quantised GGUF Q4_1 blocks (w = q * d + m, 32 weights) come back as the same values."""
    gen = torch.Generator().manual_seed(1)
    q = torch.randint(0, 16, (64, 4, 32), generator=gen)
    q[..., 0], q[..., 1] = 0, 15  # Q4_1 spans each block's min and max
    d = torch.rand(64, 4, 1, generator=gen) * 0.01 + 1e-3
    m = torch.randn(64, 4, 1, generator=gen) * 0.05
    weight = (q * d + m).reshape(64, 128)
    got_q, scales_zeros = quantize(weight, 32)
    torch.testing.assert_close(dequantize(got_q, scales_zeros, 32), weight, rtol=0, atol=1e-6)


@pytest.mark.parametrize("group_size", [32, 64])
@pytest.mark.parametrize("rows", [1, 3, 40])  # 40 > kernel_rows: the de-quantised fp32 path
def test_forward_matches_dequantised_reference(group_size: int, rows: int) -> None:
    torch.manual_seed(0)
    n = 3 * block_rows()
    layer = nn.Linear(128, n, bias=True)
    int4 = Int4Linear.from_linear(layer, group_size)
    reference = dequantize(unpack(int4.qweight, n, 128), int4.scales_zeros, group_size)
    assert torch.allclose(int4.dequantized_weight(), reference, atol=1e-6)
    x = torch.randn(2, rows, 128)
    expected = nn.functional.linear(x, reference, layer.bias)
    got = int4(x)
    assert got.shape == (2, rows, n) and got.dtype == torch.float32
    # the packed kernel computes in bf16 (about 3 significant digits); the fp32 path is exact
    tol = 0.05 if 2 * rows <= int4.kernel_rows else 1e-4
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)


def test_shapes_the_kernel_cannot_take_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of group_size"):
        Int4Linear(100, 64, group_size=32)
    with pytest.raises(ValueError, match=f"multiple of {block_rows()}"):
        Int4Linear(64, block_rows() + 16, group_size=32)


def tiny_llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    # k and v project to 2 heads x 32 = 64 rows: a whole block of the pack on AVX2 and AVX-512
    config = LlamaConfig(vocab_size=128, hidden_size=128, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def greedy(model: nn.Module, ids: torch.Tensor) -> list[int]:
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),  # type: ignore[operator]
                             max_new_tokens=6, do_sample=False, pad_token_id=0)
    return list(out[0, ids.shape[1]:].tolist())


def test_a_model_with_int4_layers_generates() -> None:
    model = tiny_llama()
    ids = torch.tensor([[1, 5, 9, 17, 33, 2, 7]])
    assert quantize_model(model) == 2 * 7, "q, k, v, o, gate, up, down in each layer"
    assert isinstance(model.model.layers[0].self_attn.q_proj, Int4Linear)  # type: ignore[union-attr,index]
    assert isinstance(model.lm_head, nn.Linear), "the tied output layer stays as it is"
    out = greedy(model, ids)
    assert len(out) == 6 and all(0 <= t < 128 for t in out)


def test_lora_runs_on_int4_layers(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from generation.adapters import attach, detach, selected

    trained = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, param in trained.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(param, std=0.5)  # B starts at zero; make the adapter change something
    trained.save_pretrained(str(tmp_path / "lora"))

    model = tiny_llama()
    quantize_model(model)
    ids = torch.tensor([[1, 5, 9, 17, 33, 2, 7]])
    base = greedy(model, ids)
    with torch.inference_mode():
        base_logits = model(input_ids=ids).logits
    wrapped = attach(model, None, "one", tmp_path / "lora")
    assert isinstance(wrapped.base_model.model.model.layers[0].self_attn.q_proj.base_layer,
                      Int4Linear)
    with selected(model, wrapped, "one") as m, torch.inference_mode():
        assert not torch.allclose(m(input_ids=ids).logits, base_logits)
    with selected(model, wrapped, None) as m:
        assert greedy(m, ids) == base
    assert detach(wrapped, "one") is None
    assert isinstance(model.model.layers[0].self_attn.q_proj, Int4Linear)  # type: ignore[union-attr,index]
