"""int8 weight-only targets: ``load_target(..., dtype="int8")``.

Every linear layer of the decoder and the LM head store their weights as int8 with one bf16 scale per output row
(symmetric, round to nearest: w ≈ q · amax(row) / 127); activations, norms and the KV cache stay bf16. A one-token
forward reads about half the bytes of bf16, which is what decoding on a CPU waits for. The product runs in PyTorch's
own int8 kernel (``aten._weight_int8pack_mm``, AVX-512 / AVX2 on x86); elsewhere (GPUs) the weight is dequantized per
call.

Why not torchao's ``Int8WeightOnlyConfig``: with torch 2.13 and torchao 0.18 on this CPU its eager path took 150 ms
for the 262,144 × 640 LM head against 18 ms in bf16 and 6.7 ms here (``docs/performance.md``); it is meant to be
fused by ``torch.compile``.

The input embedding stays bf16 (a lookup reads one row per token); the LM head gets its own int8 copy, and
``head.weight`` still points at its bf16 table (Gemma's is the tied embedding) so drafters that score candidate rows
(the MTP head) read the same rows as before. The int8 model is the target: speculative decoding stays lossless
with respect to it, and ``labkit.measure.quality.divergence`` measures how far it is from bf16 (greedy agreement, KL;
``labkit bench --dtype int8`` prints both).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class Int8Linear(nn.Module):
    """y = x Wᵀ with W stored as int8 rows and one scale per row (no bias: Gemma's linears have none)."""

    def __init__(self, weight: torch.Tensor, keep: nn.Parameter | None = None):
        super().__init__()
        w = weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)
        self.register_buffer("qweight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scale.to(weight.dtype))
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        if keep is not None:  # the LM head's bf16 rows, for drafters that score candidates; forward never reads it
            self.weight = keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if x2.device.type == "cpu" and x2.dtype == torch.bfloat16:
            y = torch.ops.aten._weight_int8pack_mm(x2.contiguous(), self.qweight, self.scales)
        else:
            y = F.linear(x2, self.qweight.to(x2.dtype)) * self.scales.to(x2.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


@torch.no_grad()
def quantize_int8(model: Any) -> Any:
    """Replace the decoder's linear layers and the LM head by ``Int8Linear`` in place; returns the model."""
    head = model.get_output_embeddings()
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and child.bias is None and child is not head:
                setattr(module, child_name, Int8Linear(child.weight))
    model.set_output_embeddings(Int8Linear(head.weight, keep=head.weight))
    model.config.labkit_weights = "int8"
    return model


def is_int8(model: Any) -> bool:
    """Whether the model's linear layers run int8 weight-only (``quantize_int8``)."""
    return isinstance(model.get_output_embeddings(), Int8Linear)


def int8_bytes(model: Any) -> int:
    """Bytes of int8 weights and their scales: what the quantized layers read per forward."""
    return sum(m.qweight.numel() + m.scales.numel() * m.scales.element_size()
               for m in model.modules() if isinstance(m, Int8Linear))
