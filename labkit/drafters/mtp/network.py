"""The MTP head's network: Gemma 4 assistant-shaped layers that read the target's K/V."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from labkit.models.geometry import kv_source_layers, text_config


@dataclass


class MTPConfig:
    backbone_hidden: int  # the target's hidden size (input and output of the head)
    hidden: int  # the head's own width
    intermediate: int
    num_heads: int
    head_dim: int  # must equal the target's: queries meet the target's keys
    num_kv_heads: int  # the target's
    layer_types: list[str]  # per head layer: the target attention type whose K/V it reads
    sliding_window: int | None
    rms_eps: float
    query_scale: float  # the target's attention scale
    vocab_size: int  # the target's full vocabulary
    final_logit_softcapping: float | None = None
    context_tokens: bool = True  # also score every token already in the context (copies), not only vocab_ids

    @classmethod
    def for_target(cls, model: Any, layers: int = 2, hidden: int | None = None,
                   intermediate: int | None = None) -> MTPConfig:
        """A head shaped for ``model``: layer i reads the sliding layer, then the full layer (as Gemma 4 does)."""
        cfg = text_config(model)
        kinds = list(kv_source_layers(model))
        order = [k for k in ("sliding_attention", "full_attention") if k in kinds] or kinds
        if layers not in (1, 2):
            raise ValueError(f"layers: must be 1 or 2, got {layers!r}")
        types = order[-1:] if layers == 1 else [order[0], order[-1]]
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        scalar = getattr(cfg, "query_pre_attn_scalar", None) or head_dim
        return cls(
            backbone_hidden=cfg.hidden_size, hidden=hidden or cfg.hidden_size,
            intermediate=intermediate or 2 * (hidden or cfg.hidden_size),
            num_heads=cfg.num_attention_heads, head_dim=head_dim, num_kv_heads=cfg.num_key_value_heads,
            layer_types=types, sliding_window=getattr(cfg, "sliding_window", None),
            rms_eps=float(cfg.rms_norm_eps), query_scale=float(scalar) ** -0.5, vocab_size=cfg.vocab_size,
            final_logit_softcapping=getattr(cfg, "final_logit_softcapping", None),
        )


class RMSNorm(nn.Module):
    """Gemma's RMSNorm: the weight is stored as an offset from 1, computed in fp32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * (1.0 + self.weight.float())).type_as(x)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (the half-split convention transformers' Gemma uses)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class HeadLayer(nn.Module):
    """A Gemma decoder layer without K/V projections: its queries attend to K/V the target already computed."""

    def __init__(self, c: MTPConfig):
        super().__init__()
        self.heads, self.head_dim, self.scale = c.num_heads, c.head_dim, c.query_scale
        self.input_norm = RMSNorm(c.hidden, c.rms_eps)
        self.q_proj = nn.Linear(c.hidden, c.num_heads * c.head_dim, bias=False)
        self.q_norm = RMSNorm(c.head_dim, c.rms_eps)
        self.o_proj = nn.Linear(c.num_heads * c.head_dim, c.hidden, bias=False)
        self.post_attn_norm = RMSNorm(c.hidden, c.rms_eps)
        self.pre_ffw_norm = RMSNorm(c.hidden, c.rms_eps)
        self.gate_proj = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.up_proj = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.down_proj = nn.Linear(c.intermediate, c.hidden, bias=False)
        self.post_ffw_norm = RMSNorm(c.hidden, c.rms_eps)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, hidden]; kv: K, V [B, kv_heads, S, head_dim]; cos/sin [B, T, head_dim]; mask [T, S] (True = see)."""
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(self.input_norm(x)).view(B, T, self.heads, self.head_dim))
        q = rotate(q, cos[:, :, None], sin[:, :, None]).transpose(1, 2)
        k, v = kv
        a = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask, scale=self.scale,
                                           enable_gqa=True)
        x = x + self.post_attn_norm(self.o_proj(a.transpose(1, 2).reshape(B, T, -1)))
        h = self.pre_ffw_norm(x)
        return x + self.post_ffw_norm(self.down_proj(F.gelu(self.gate_proj(h), approximate="tanh") * self.up_proj(h)))


class MTPHead(nn.Module):
    """The trainable part: pre_projection -> layers -> norm -> post_projection, plus the reduced vocabulary ids."""

    def __init__(self, c: MTPConfig, vocab_ids: torch.Tensor | None = None):
        super().__init__()
        self.config = c
        self.pre_projection = nn.Linear(2 * c.backbone_hidden, c.hidden, bias=False)
        self.layers = nn.ModuleList([HeadLayer(c) for _ in c.layer_types])
        self.norm = RMSNorm(c.hidden, c.rms_eps)
        self.post_projection = nn.Linear(c.hidden, c.backbone_hidden, bias=False)
        ids = torch.arange(c.vocab_size) if vocab_ids is None else torch.as_tensor(vocab_ids, dtype=torch.long)
        self.register_buffer("vocab_ids", ids.long(), persistent=True)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
        nn.init.normal_(self.post_projection.weight, std=0.1 / math.sqrt(c.hidden))  # start near uniform logits

    def forward(self, token_embeds: torch.Tensor, hidden: torch.Tensor, kv: dict[str, tuple],
                rope: dict[str, tuple], masks: dict[str, torch.Tensor | None] | None = None) -> torch.Tensor:
        """One draft step for [B, T] queries at once. Returns the predicted next hidden state [B, T, backbone]."""
        x = self.pre_projection(torch.cat([token_embeds, hidden.to(token_embeds.dtype)], dim=-1))
        for layer, kind in zip(self.layers, self.config.layer_types, strict=True):
            x = layer(x, kv[kind], *rope[kind], (masks or {}).get(kind))
        return self.post_projection(self.norm(x))

    def logits(self, g: torch.Tensor, lm_head_rows: torch.Tensor) -> torch.Tensor:
        """Scores of the candidate tokens whose LM-head rows are given: [..., len(rows)]."""
        z = F.linear(g, lm_head_rows) if lm_head_rows.dim() == 2 else g @ lm_head_rows.transpose(-1, -2)
        cap = self.config.final_logit_softcapping
        return torch.tanh(z / cap) * cap if cap else z
