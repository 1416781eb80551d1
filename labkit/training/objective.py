"""The training objective and the held-out measurement: both unroll the head over stored target data.

Training unrolls the head ``unroll`` steps from every position at once (teacher forcing: step j reads the data
token, which is what an accepted draft is), feeding its own predicted hidden state forward as it does when
drafting. Loss per step: cross-entropy to the target's top-``distill_top`` distribution over the candidates (the
reduced vocabulary plus the tokens already in the context, as when drafting), plus a regression of the predicted
hidden state onto the target's real one. On held-out greedy text the chain lengths of the same unrolling are the
greedy acceptance the engine would see on that text (``evaluate``).
"""

from __future__ import annotations

from typing import Any

import torch

from labkit.drafters.mtp.network import MTPConfig, MTPHead
from labkit.models.load import Target


class TargetParts:
    """What training reads from the frozen target: input embeddings, LM head rows, rotary tables."""

    def __init__(self, target: Target, vocab_ids: torch.Tensor):
        m = target.model
        self.embed = m.get_input_embeddings()
        self.rotary = m.model.rotary_emb
        self.lm_head = m.get_output_embeddings().weight.detach()
        self.lm_rows = self.lm_head[vocab_ids].float().cpu()
        self.full_to_sub = torch.full((target.vocab_size,), -1, dtype=torch.long)
        self.full_to_sub[vocab_ids] = torch.arange(vocab_ids.numel())
        self.vocab_ids = vocab_ids

    @torch.no_grad()
    def embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        dev = self.embed.weight.device
        return self.embed(ids.to(dev)).float().cpu()

    @torch.no_grad()
    def rope(self, positions: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.embed.weight.device
        cos, sin = self.rotary(torch.zeros(1, device=dev), positions.to(dev), kind)
        return cos.float().cpu(), sin.float().cpu()


def batch_views(d: dict[str, torch.Tensor], rows: torch.Tensor, parts: TargetParts, c: MTPConfig,
                unroll: int, top: int | None = None) -> dict[str, Any]:
    """fp32 tensors for ``rows`` of one data chunk: queries at every position m in [P, S - unroll]."""
    ids = d["ids"][rows]
    B, S = ids.shape
    P = int(d["prompt_len"])
    m = torch.arange(P, S - unroll + 1)
    start = d["start"][rows]
    s = torch.arange(S)
    see = (s[None, None, :] < m[None, :, None]) & (s[None, None, :] >= start[:, None, None])  # [B, M, S]
    masks = {}
    for kind in c.layer_types:
        mk = see
        if kind == "sliding_attention" and c.sliding_window:
            mk = mk & (s[None, None, :] > m[None, :, None] - c.sliding_window)
        masks[kind] = mk[:, None]
    pos = m[None, :] - start[:, None]
    # Context tokens (copies): position s offers token x_s if it is its first occurrence and not in vocab_ids;
    # a query at m may use positions s <= m (the committed tokens at drafting time).
    real = s[None, :] >= start[:, None]
    first_pos = torch.full((B, parts.full_to_sub.numel()), S, dtype=torch.long)
    first_pos.scatter_reduce_(1, ids, torch.where(real, s[None, :], S).expand(B, S), reduce="amin")
    offers = (first_pos.gather(1, ids) == s[None, :]) & real & (parts.full_to_sub[ids] < 0)
    top_ids = d["top_ids"][rows, :, :top].long()
    return {
        "m": m, "ids": ids, "emb": parts.embeddings(ids), "hidden": d["hidden"][rows].float(),
        "features": (torch.cat([d[f"hidden.{i}"][rows].float() for i in c.fuse_layers], dim=-1)
                     if c.fuse_layers else None),
        "top_ids": top_ids, "top_p": d["top_p"][rows, :, :top].float(),
        "ctx_rows": parts.lm_head[ids.to(parts.lm_head.device)].float().cpu(), "ctx_offer": offers,
        "top_first": first_pos.gather(1, top_ids.flatten(1)).view_as(top_ids),
        "kv": {kind: (d[f"kv.{kind}.k"][rows].float(), d[f"kv.{kind}.v"][rows].float()) for kind in c.layer_types},
        "rope": {kind: parts.rope(pos, kind) for kind in c.layer_types}, "masks": masks,
        "valid": valid_positions(d, rows),
    }


def valid_positions(d: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    """[B, S] True where a label exists: from the last prompt token on."""
    S = d["ids"].shape[1]
    P = int(d["prompt_len"])
    return (torch.arange(S) >= P - 1)[None].expand(rows.numel(), S)


def unroll(head: MTPHead, b: dict[str, Any], parts: TargetParts, steps: int, reg_weight: float,
           h_scale: float) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """Loss of ``steps`` chained draft steps from every query position; also per-step top-1 agreement."""
    m = b["m"]
    Vs, S = parts.lm_rows.shape[0], b["ids"].shape[1]
    use_ctx = head.config.context_tokens
    # candidates at query m: vocab_ids, then (with context_tokens) the first occurrences at positions <= m
    offer = b["ctx_offer"][:, None, :] & (torch.arange(S)[None, None, :] <= m[None, :, None])  # [B, M, S]
    g = head.first_state(b["features"][:, m - 1]) if head.config.fuse_layers else b["hidden"][:, m - 1]
    total = torch.zeros(())
    stats: dict[str, list[float]] = {"ce": [], "match": [], "chain": [], "covered": []}
    chain = None
    for j in range(steps):
        at = m + j
        g = head(b["emb"][:, at], g, b["kv"], b["rope"], b["masks"])
        z = head.logits(g, parts.lm_rows).float()
        sub = parts.full_to_sub[b["top_ids"][:, at]]  # [B, M, TOP] index among candidates, -1 if none
        if use_ctx:
            zc = head.logits(g, b["ctx_rows"]).float().masked_fill(~offer, float("-inf"))
            z = torch.cat([z, zc], dim=-1)
            first = b["top_first"][:, at]
            copy = (sub < 0) & (first <= m[None, :, None])
            sub = torch.where(copy, Vs + first, sub)
        logp = torch.log_softmax(z, dim=-1)
        w = b["top_p"][:, at] * (sub >= 0)
        has = (w.sum(-1) > 0) & b["valid"][:, at]
        w = w / w.sum(-1, keepdim=True).clamp_min(1e-9)
        ce = -(w * logp.gather(-1, sub.clamp_min(0))).sum(-1)
        reg = (g - b["hidden"][:, at]).pow(2).mean(-1) / h_scale
        keep = has.float()
        total = total + ((ce + reg_weight * reg) * keep).sum() / keep.sum().clamp_min(1)
        with torch.no_grad():
            best = z.argmax(-1)
            token = parts.vocab_ids[best.clamp(max=Vs - 1)]
            if use_ctx:
                copied = b["ids"].gather(1, (best - Vs).clamp(min=0).flatten(1)).view_as(best)
                token = torch.where(best >= Vs, copied, token)
            match = (token == b["top_ids"][:, at, 0]) & b["valid"][:, at]
            chain = match if chain is None else chain & match
            stats["ce"].append(float((ce * keep).sum() / keep.sum().clamp_min(1)))
            stats["match"].append(float(match.float().mean()))
            stats["chain"].append(float(chain.float().mean()))
            stats["covered"].append(float((sub[..., 0] >= 0).float().mean()))
    return total / steps, stats


@torch.no_grad()
def evaluate(head: MTPHead, heldout: dict[str, torch.Tensor], parts: TargetParts, k: int) -> dict[str, Any]:
    """Greedy acceptance on held-out greedy text: chain lengths of k-step drafts from every position."""
    head.eval()
    rows = torch.arange(heldout["ids"].shape[0])
    b = batch_views(heldout, rows, parts, head.config, k)
    _, st = unroll(head, b, parts, k, 0.0, 1.0)
    # chain[j]: the share of k-step drafts whose first j+1 tokens were all accepted, i.e. drafts whose position j+1
    # was accepted: labkit.core.metrics' acceptance by position, from the same unconditional counts
    reach = [1.0] + st["chain"]
    conditional = [reach[j + 1] / reach[j] if reach[j] > 0 else None for j in range(k)]
    mal = {str(kk): 1 + sum(reach[1:kk + 1]) for kk in range(1, k + 1)}  # mean acceptance length at k = kk
    head.train()
    return {"acceptance_by_position": st["chain"], "conditional_acceptance_by_position": conditional,
            "mean_acceptance_length": mal,
            "top1_in_candidates": st["covered"][0], "positions": int(b["valid"][:, b["m"]].sum())}
