"""The MTP head's network: Gemma 4 assistant-shaped layers that read the target's K/V."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from labkit.models.geometry import attention_dims, kv_source_layers, text_config


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
    # per head layer, from the target layer it reads (Gemma 4: full layers have a wider head, global_head_dim);
    # None in files written before they existed: every layer then uses head_dim / num_kv_heads / query_scale
    head_dims: list[int] | None = None
    kv_heads: list[int] | None = None
    query_scales: list[float] | None = None
    # EAGLE-3-style input: the first draft step reads fc(concat of these target layers' inputs) instead of the last
    # hidden state (transformers' hidden_states[i]); None = the last hidden state, as Gemma 4's assistant
    fuse_layers: list[int] | None = None

    def dims(self, i: int) -> tuple[int, int, float]:
        """(head_dim, K/V heads, attention scale) of head layer ``i``."""
        if self.head_dims is None:
            return self.head_dim, self.num_kv_heads, self.query_scale
        return self.head_dims[i], self.kv_heads[i], self.query_scales[i]

    @classmethod
    def for_target(cls, model: Any, layers: int = 2, hidden: int | None = None,
                   intermediate: int | None = None, fuse_layers: list[int] | None = None) -> MTPConfig:
        """A head shaped for ``model``: layer i reads the sliding layer, then the full layer (as Gemma 4 does)."""
        cfg = text_config(model)
        kinds = list(kv_source_layers(model))
        order = [k for k in ("sliding_attention", "full_attention") if k in kinds] or kinds
        if layers not in (1, 2):
            raise ValueError(f"layers: must be 1 or 2, got {layers!r}")
        types = order[-1:] if layers == 1 else [order[0], order[-1]]
        source = kv_source_layers(model)
        dims = [attention_dims(model, source[t]) for t in types]  # queries meet that layer's keys: same head size
        scalar = getattr(cfg, "query_pre_attn_scalar", None)
        scales = [float(scalar or d) ** -0.5 for d, _ in dims]
        return cls(
            backbone_hidden=cfg.hidden_size, hidden=hidden or cfg.hidden_size,
            intermediate=intermediate or 2 * (hidden or cfg.hidden_size),
            num_heads=cfg.num_attention_heads, head_dim=dims[0][0], num_kv_heads=dims[0][1],
            layer_types=types, sliding_window=getattr(cfg, "sliding_window", None),
            rms_eps=float(cfg.rms_norm_eps), query_scale=scales[0], vocab_size=cfg.vocab_size,
            final_logit_softcapping=getattr(cfg, "final_logit_softcapping", None),
            head_dims=[d for d, _ in dims], kv_heads=[h for _, h in dims], query_scales=scales,
            fuse_layers=list(fuse_layers) if fuse_layers else None,
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

    def __init__(self, c: MTPConfig, i: int = 0):
        super().__init__()
        self.heads = c.num_heads
        self.head_dim, _, self.scale = c.dims(i)
        self.input_norm = RMSNorm(c.hidden, c.rms_eps)
        self.q_proj = nn.Linear(c.hidden, c.num_heads * self.head_dim, bias=False)
        self.q_norm = RMSNorm(self.head_dim, c.rms_eps)
        self.o_proj = nn.Linear(c.num_heads * self.head_dim, c.hidden, bias=False)
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
        if c.fuse_layers:  # EAGLE-3's fc: low, middle and high target features -> one backbone-sized state
            self.fuse = nn.Linear(len(c.fuse_layers) * c.backbone_hidden, c.backbone_hidden, bias=False)
        self.layers = nn.ModuleList([HeadLayer(c, i) for i in range(len(c.layer_types))])
        self.norm = RMSNorm(c.hidden, c.rms_eps)
        self.post_projection = nn.Linear(c.hidden, c.backbone_hidden, bias=False)
        ids = torch.arange(c.vocab_size) if vocab_ids is None else torch.as_tensor(vocab_ids, dtype=torch.long)
        if vocab_ids is not None and ids.unique().numel() != ids.numel():  # listed twice: twice its share of q
            raise ValueError(f"vocab_ids: {ids.numel() - ids.unique().numel()} token ids are listed more than once; "
                             "pass each candidate token once (e.g. vocab_ids.unique())")
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

    def first_state(self, features: torch.Tensor) -> torch.Tensor:
        """What the first draft step reads as "the last hidden state": the target's last hidden state itself, or
        (fused heads) fc of its concatenated layer features [..., len(fuse_layers) x backbone]."""
        return self.fuse(features) if self.config.fuse_layers else features

    def logits(self, g: torch.Tensor, lm_head_rows: torch.Tensor) -> torch.Tensor:
        """Scores of the candidate tokens whose LM-head rows are given: [..., len(rows)]."""
        z = F.linear(g, lm_head_rows) if lm_head_rows.dim() == 2 else g @ lm_head_rows.transpose(-1, -2)
        cap = self.config.final_logit_softcapping
        return torch.tanh(z / cap) * cap if cap else z
