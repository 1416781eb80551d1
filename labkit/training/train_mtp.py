"""Self-distillation of an MTP drafter (``labkit.drafters.mtp``) from its target: ``labkit train-mtp``.

Data: text the target generates itself from varied seed prompts (``labkit.training.seeds``), many sequences in parallel
(64 at once cost ~31 ms per token on a loaded 2-core CPU, one stream ~160 ms). Acceptance is decided by the target's
own distribution, so its own text and its own hidden states, K/V and next-token distributions are exactly what the
drafter meets at decoding time. Batches alternate greedy and sampled continuations: greedy text is what a greedy
benchmark sees, sampled text (T = 0.5, 0.7, 1.0) adds variety.

Every generation step records, for each new position: the token, the target's last hidden state, the K/V of the
layers an MTP head reads (in the cache at the end) and the target's top-32 next-token probabilities. Training unrolls
the head ``--unroll`` steps from every position at once (teacher forcing: step j reads the data token, which is what
an accepted draft is), feeding its own predicted hidden state forward as it does when drafting. Loss per step:
cross-entropy to the target's top-``distill_top`` distribution over the candidates (the reduced vocabulary plus the
tokens already in the context, as when drafting), plus a regression of the predicted hidden state onto the
target's real one.

Held-out evaluation: greedy continuations of prompts never trained on (``mtp_seeds.HELDOUT``); on greedy text a
draft is accepted exactly when it equals the next data token, so the measured chain lengths are the greedy
acceptance the engine would see on that text.

Files in ``--out``: data/*.safetensors (generated once, reused on --resume), checkpoint.safetensors + state.json
(head, optimizer, RNG; every --checkpoint-every steps), mtp.safetensors (the drafter, bf16) and eval.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.drafters.mtp.network import MTPConfig, MTPHead
from labkit.drafters.mtp.weights import describe_target
from labkit.models.geometry import kv_source_layers, text_config
from labkit.models.load import Target

TOP = 32  # target probabilities stored per position; training distils on the first `distill_top` of them


@dataclass


class TrainConfig:
    target: str = "gemma3-270m"
    out: str = "mtp-run"
    steps: int = 700  # defaults = the recipe of the shipped head (labkit/data/MODEL_CARD.md)
    seed: int = 0
    dtype: str = "bf16"  # of the target while generating data; the head trains in fp32
    data_batches: int = 37  # shards of batch_size sequences: 37 x 64 x 129 = 305k labelled positions
    batch_size: int = 64  # sequences generated in parallel
    new_tokens: int = 128
    temperatures: tuple[float, ...] = (0.0, 0.7, 1.0, 0.5)  # cycled over data batches
    heldout_tokens: int = 96
    distill_top: int = 32  # the target's top-n probabilities the loss distils on (data keeps TOP = 32)
    greedy_prefix: int = 8  # greedy shards: each row samples its first 0..greedy_prefix new tokens at T = 1
    # Target layers whose inputs the data also stores (hidden.<i>), for an EAGLE-3-style head that fuses low,
    # middle and high features; None = EAGLE-3's choice (2, L // 2, L - 3), () = only the last hidden state.
    aux_layers: tuple[int, ...] | None = None
    seed_set: str = "v1"  # seed prompts (labkit.training.seeds.SEED_SETS): v1 = the first head's; v2, summaries
    fuse: bool = False  # train an EAGLE-3-style head on those layers (needs data that stores them)
    fuse_last: bool = False  # the fused head also reads the last hidden state (the one the LM head scores)
    init_from: str | None = None  # start from this drafter's weights and vocabulary (e.g. the shipped head)
    vocab: int = 4096  # reduced vocabulary: the most frequent tokens of the generated text (+ context tokens)
    layers: int = 2
    hidden: int | None = None  # head width (default: the target's)
    intermediate: int | None = None
    unroll: int = 3
    train_batch: int = 8  # sequences per optimizer step (every position of each is a query)
    lr: float = 2e-3
    warmup: int = 30
    reg_weight: float = 0.5
    eval_every: int = 100
    checkpoint_every: int = 50
    eval_k: int = 6
    threads: int | None = None
    autocast: bool = True  # bf16 matmuls while training (fp32 weights and optimizer): ~1.7x faster on CPU
    history: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- data


def fuse_layers_for(model: Any, cfg: TrainConfig) -> list[int]:
    """The features a fused head reads: the aux layers' inputs, then (``fuse_last``) the last hidden state, L."""
    layers, last = list(aux_layers_for(model, cfg.aux_layers)), text_config(model).num_hidden_layers
    return [i for i in layers if i != last] + [last] if cfg.fuse_last else layers


def init_config(start: MTPHead, fuse: list[int] | None, last: int) -> MTPConfig:
    """The config of a run that starts from ``start``: its own, with ``fuse`` features if asked for. An unfused
    head can start a fused one only if the fused features end with the last hidden state (see init_weights)."""
    have = start.config.fuse_layers
    if not fuse or have == fuse:
        if have and not fuse:
            raise ValueError(f"--init-from: that head is fused (layers {have}); pass --fuse with the same layers")
        return start.config
    if have or fuse[-1] != last:
        raise ValueError(f"--init-from: a head reading {have or 'the last hidden state'} cannot start one that fuses "
                         f"layers {fuse}; pass --fuse-last (then the new head starts as the given one)")
    return replace(start.config, fuse_layers=list(fuse))


def init_weights(head: MTPHead, start: MTPHead) -> None:
    """Copy ``start`` into ``head``. A fused head started from an unfused one gets an fc that passes the last
    hidden state through and ignores the other layers (zero weights, which still get gradients): step 0 drafts
    exactly as ``start`` does, and training can only add what the low and middle layers know."""
    state = {k: v.float() for k, v in start.state_dict().items()}
    if head.config.fuse_layers and not start.config.fuse_layers:
        H = head.config.backbone_hidden
        fc = torch.zeros(H, len(head.config.fuse_layers) * H)
        fc[:, -H:] = torch.eye(H)
        state["fuse.weight"] = fc
    head.load_state_dict(state)


def aux_layers_for(model: Any, aux_layers: tuple[int, ...] | None) -> tuple[int, ...]:
    """The target layers whose input features EAGLE-3 fuses: (2, L // 2, L - 3) unless given."""
    if aux_layers is not None:
        return tuple(aux_layers)
    n = text_config(model).num_hidden_layers
    return tuple(sorted({min(2, n - 1), n // 2, max(0, n - 3)}))


@torch.inference_mode()
def self_generate(target: Target, prompts: list[list[int]], new_tokens: int, temperature: float,
                  seed: int, progress: bool = True, desc: str = "generate",
                  sampled_prefix: torch.Tensor | None = None,
                  aux_layers: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    """The target continues every prompt at once (left-padded); returns what training needs, on the CPU.

    ``sampled_prefix`` [B]: with temperature 0, row b draws its first ``sampled_prefix[b]`` new tokens at T = 1 and
    continues greedily (greedy continuations of one seed would otherwise be identical copies).

    ids [B, S], start [B] (first real token), hidden [B, S, H], top_ids/top_p [B, S, TOP] (the target's next-token
    distribution at each position; valid from the last prompt token on), kv.<type>.k / .v [B, kv_heads, S, hd];
    hidden.<i> [B, S, H]: the input of target layer i (transformers' hidden_states[i]) for each i in ``aux_layers``.
    """
    from tqdm.auto import tqdm
    from transformers import DynamicCache

    model = target.model
    dev = target.device
    B, P = len(prompts), max(len(p) for p in prompts)
    pad = text_config(model).pad_token_id or 0
    ids = torch.full((B, P), pad, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.tensor(p)
    start = torch.tensor([P - len(p) for p in prompts])
    attn = (torch.arange(P)[None] >= start[:, None]).long()
    gen = torch.Generator(device=dev).manual_seed(seed)
    cache = DynamicCache(config=model.config)
    cache.activate_past_recording()  # sliding layers keep every position (never cropped here): training needs them
    hidden, tops_i, tops_p = [], [], []
    aux: dict[int, list[torch.Tensor]] = {i: [] for i in aux_layers}

    def forward(x: torch.Tensor, mask: torch.Tensor) -> Any:
        pos = (mask.cumsum(-1) - 1).clamp_min(0)[:, -x.shape[1]:]
        return model(input_ids=x.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                     cache=cache, use_cache=True, output_hidden_states=True, logits_to_keep=1)

    def record(out: Any) -> torch.Tensor:
        hidden.append(out.hidden_states[-1].to("cpu", torch.bfloat16))
        for i, kept in aux.items():
            kept.append(out.hidden_states[i].to("cpu", torch.bfloat16))
        logits = out.logits[:, -1].float()
        top = torch.log_softmax(logits, -1).topk(min(TOP, logits.shape[-1]), dim=-1)
        tops_i.append(top.indices.int().cpu())
        tops_p.append(top.values.exp().cpu())
        return logits

    logits = record(forward(ids, attn))
    seq = [ids]
    for step in tqdm(range(new_tokens), desc=desc, disable=not progress, leave=False):
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)
            if sampled_prefix is not None and bool((sampled_prefix > step).any()):
                drawn = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
                nxt = torch.where((sampled_prefix > step)[:, None].to(nxt.device), drawn, nxt)
        else:
            nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen)
        nxt = nxt.cpu()
        seq.append(nxt)
        attn = torch.cat([attn, torch.ones(B, 1, dtype=torch.long)], dim=1)
        logits = record(forward(nxt, attn))
    S = P + new_tokens
    width = tops_i[0].shape[-1]
    top_ids = torch.zeros(B, S, width, dtype=torch.int32)
    top_p = torch.zeros(B, S, width)
    top_ids[:, P - 1:] = torch.stack(tops_i, dim=1)  # position P-1 from the prefill, then one per new token
    top_p[:, P - 1:] = torch.stack(tops_p, dim=1)
    data = {"ids": torch.cat(seq, dim=1), "start": start, "hidden": torch.cat(hidden, dim=1),
            "top_ids": top_ids, "top_p": top_p.to(torch.bfloat16),
            "prompt_len": torch.tensor(P)}
    for i, kept in aux.items():
        data[f"hidden.{i}"] = torch.cat(kept, dim=1)
    for kind, i in kv_source_layers(model).items():
        layer = cache.layers[i]
        data[f"kv.{kind}.k"] = layer.keys.to("cpu", torch.bfloat16).contiguous()
        data[f"kv.{kind}.v"] = layer.values.to("cpu", torch.bfloat16).contiguous()
    return data


def seed_prompts(target: Target, heldout: bool, count: int, seed: int, seed_set: str = "v1") -> list[list[int]]:
    """Token ids of the seed prompts (cycled to ``count``); random ids for targets without a tokenizer."""
    if target.tokenizer is None:
        g = torch.Generator().manual_seed(seed + (7919 if heldout else 0))
        V = target.vocab_size
        return [torch.randint(3, V, (int(torch.randint(4, 12, (1,), generator=g)),), generator=g).tolist()
                for _ in range(count)]
    from labkit.training.seeds import HELDOUT, SEED_SETS

    if seed_set not in SEED_SETS:
        raise ValueError(f"seed set: unknown {seed_set!r}; choose from {', '.join(SEED_SETS)}")
    texts = HELDOUT if heldout else SEED_SETS[seed_set]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(texts), generator=g).tolist()
    return [target.tokenizer(texts[order[i % len(texts)]])["input_ids"] for i in range(count)]


def build_vocab(chunks: list[dict[str, torch.Tensor]], size: int, vocab_size: int) -> torch.Tensor:
    """The ``size`` most frequent tokens among the generated text and the target's top-1 predictions."""
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for d in chunks:
        counts += torch.bincount(d["ids"].flatten(), minlength=vocab_size)
        P = int(d["prompt_len"])
        counts += torch.bincount(d["top_ids"][:, P - 1:, 0].flatten().long(), minlength=vocab_size)
    size = min(size, vocab_size)
    return counts.topk(size).indices.sort().values


# ---------------------------------------------------------------------------------------------------- model side


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


# ---------------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(out: Path, head: MTPHead, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Atomic: head + optimizer moments + RNG as safetensors, the rest as JSON."""
    from safetensors.torch import save_file

    tensors = {f"head.{k}": v.contiguous() for k, v in head.state_dict().items()}
    steps = {}
    for i, p in enumerate(head.parameters()):
        st = opt.state.get(p, {})
        if st:
            tensors[f"opt.{i}.exp_avg"] = st["exp_avg"].contiguous()
            tensors[f"opt.{i}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
            steps[str(i)] = float(st["step"])
    tensors["rng.torch"] = torch.get_rng_state()
    tmp = out / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, out / "checkpoint.safetensors")
    (out / "state.json.tmp").write_text(json.dumps({**state, "opt_steps": steps}, indent=1))
    os.replace(out / "state.json.tmp", out / "state.json")


def load_checkpoint(out: Path, head: MTPHead, opt: torch.optim.Optimizer) -> dict[str, Any]:
    from safetensors.torch import load_file

    t = load_file(str(out / "checkpoint.safetensors"))
    state = json.loads((out / "state.json").read_text())
    head.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("head.")})
    for i, p in enumerate(head.parameters()):
        if f"opt.{i}.exp_avg" in t:
            opt.state[p] = {"exp_avg": t[f"opt.{i}.exp_avg"], "exp_avg_sq": t[f"opt.{i}.exp_avg_sq"],
                            "step": torch.tensor(state["opt_steps"][str(i)])}
    torch.set_rng_state(t["rng.torch"])
    return state


# ---------------------------------------------------------------------------------------------------- main loop


def prepare_data(cfg: TrainConfig, target: Target, out: Path, progress: bool) -> tuple[list[dict], dict, float]:
    """Generate (or reload) the training chunks and the held-out set; returns them and the seconds spent."""
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    (out / "data").mkdir(parents=True, exist_ok=True)
    chunks = []
    paths = [out / "data" / f"train-{i}.safetensors" for i in range(cfg.data_batches)]
    done = sum(p.exists() for p in paths)
    aux = aux_layers_for(target.model, cfg.aux_layers)
    per_shard = cfg.batch_size * (cfg.new_tokens + 1)
    # One shard per batch, written atomically: an interrupted run resumes at the first missing shard.
    bar = tqdm(total=cfg.data_batches * per_shard, initial=done * per_shard, unit="pos", unit_scale=True,
               desc="self-distillation data", disable=not progress or done == cfg.data_batches)
    for i, path in enumerate(paths):
        if not path.exists():
            seed = cfg.seed * 1000 + i
            prompts = seed_prompts(target, False, cfg.batch_size, seed, cfg.seed_set)
            temp = cfg.temperatures[i % len(cfg.temperatures)]
            prefix = None
            if temp == 0 and cfg.greedy_prefix > 0:
                prefix = torch.randint(0, cfg.greedy_prefix + 1, (len(prompts),),
                                       generator=torch.Generator().manual_seed(seed))
            d = self_generate(target, prompts, cfg.new_tokens, temp, seed, progress,
                              desc=f"shard {i + 1}/{cfg.data_batches} (T={temp})", sampled_prefix=prefix,
                              aux_layers=aux)
            tmp = path.with_suffix(".tmp")
            save_file(d, str(tmp), metadata={"temperature": str(temp), "greedy_prefix": str(cfg.greedy_prefix),
                                             "seed_set": cfg.seed_set})
            os.replace(tmp, path)
            bar.update(per_shard)
        chunks.append(load_file(str(path)))
    bar.close()
    path = out / "data" / "heldout.safetensors"
    if not path.exists():
        n = 16 if target.tokenizer is not None else 8
        d = self_generate(target, seed_prompts(target, True, n, cfg.seed), cfg.heldout_tokens, 0.0, cfg.seed,
                          progress, desc="held-out (greedy)", aux_layers=aux)
        tmp = path.with_suffix(".tmp")  # atomic, as the shards: a run started next to this one never reads half
        save_file(d, str(tmp), metadata={"temperature": "0"})
        os.replace(tmp, path)
    return chunks, load_file(str(path)), time.perf_counter() - t0


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def train_step(head: Any, opt: torch.optim.Optimizer, chunks: list[dict[str, Any]], parts: Any, c: Any,
               cfg: Any, step: int, gen: torch.Generator, h_scale: float) -> tuple[torch.Tensor, dict[str, Any]]:
    """One optimizer step on a random batch of one data chunk (shared by `labkit train-mtp` and notebook 07).

    The batch depends on (seed, step) only, so a resumed run draws exactly the batches of an uninterrupted one.
    """
    gen.manual_seed(cfg.seed * 1_000_003 + step)
    d = chunks[int(torch.randint(len(chunks), (1,), generator=gen))]
    rows = torch.randperm(d["ids"].shape[0], generator=gen)[: cfg.train_batch]
    for group in opt.param_groups:
        group["lr"] = lr_at(cfg, step)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.autocast):
        b = batch_views(d, rows, parts, c, cfg.unroll, cfg.distill_top)
        loss, st = unroll(head, b, parts, cfg.unroll, cfg.reg_weight, h_scale)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
    opt.step()
    return loss, st


def train(cfg: TrainConfig, target: Target | None = None, resume: bool = False, progress: bool = True,
          data_only: bool = False) -> dict[str, Any]:
    """Run (or resume) a training; returns the final state (with held-out evaluation). Deterministic per seed.

    ``data_only``: generate (or complete) the data shards and return their size without training.
    """
    from tqdm.auto import tqdm

    from labkit.models.load import load_target

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.fuse_last and not cfg.fuse:
        raise ValueError("--fuse-last: adds the last hidden state to a fused head's features; pass --fuse too")
    out = Path(cfg.out)
    started = (out / "state.json").exists() or (out / "data").exists()
    if started and not resume and not data_only:  # adding shards to a data folder is always a resume
        raise ValueError(f"--out: {out} already holds a training run; pass --resume to continue it, "
                         "or choose another folder")
    if resume and not started and not data_only:
        raise ValueError(f"--resume: {out} holds no training run to resume; drop --resume to start one")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if target is None:
        target = load_target(cfg.target, dtype=cfg.dtype, progress=progress)
    chunks, heldout, data_s = prepare_data(cfg, target, out, progress)
    if data_only:
        return {"data_seconds": round(data_s, 1), "shards": len(chunks),
                "positions": sum(d["ids"].shape[0] * (d["ids"].shape[1] - int(d["prompt_len"]) + 1) for d in chunks)}

    vocab_ids = build_vocab(chunks, cfg.vocab, target.vocab_size)
    fuse = fuse_layers_for(target.model, cfg) if cfg.fuse else None
    last = text_config(target.model).num_hidden_layers  # hidden_states[L]: the final normed state, data's "hidden"
    for d in [*chunks, heldout]:
        d.setdefault(f"hidden.{last}", d["hidden"])  # an alias in memory, no copy
    if fuse and (missing := [f"hidden.{i}" for i in fuse if f"hidden.{i}" not in chunks[0]]):
        raise ValueError(f"--fuse: the data in {out / 'data'} lacks {', '.join(missing)}; generate data that stores "
                         "those layers (--aux-layers) in a new --out folder")
    c = MTPConfig.for_target(target.model, layers=cfg.layers, hidden=cfg.hidden, intermediate=cfg.intermediate,
                             fuse_layers=fuse)
    start = None
    if cfg.init_from and not (out / "checkpoint.safetensors").exists():
        start = MTPDrafter.load(cfg.init_from).head
        c, vocab_ids = init_config(start, fuse, last), start.vocab_ids.clone()
    head = MTPHead(c, vocab_ids).train()
    if start is not None:
        init_weights(head, start)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.95))
    state: dict[str, Any] = {"step": 0, "train_seconds": 0.0, "data_seconds": data_s, "history": [], "evals": []}
    if resume and (out / "checkpoint.safetensors").exists():
        state = load_checkpoint(out, head, opt)
        state["data_seconds"] = state.get("data_seconds", 0.0) + data_s
        # The checkpoint's vocabulary wins: shards added since would otherwise change which rows the head scores.
        vocab_ids = head.vocab_ids.clone()
    parts = TargetParts(target, vocab_ids)
    h_scale = float(torch.cat([d["hidden"].float().pow(2).mean().reshape(1) for d in chunks]).mean())
    gen = torch.Generator()  # reseeded per step by train_step

    bar = tqdm(total=cfg.steps, initial=state["step"], desc="train-mtp", disable=not progress)
    t_last = time.perf_counter()
    while state["step"] < cfg.steps:
        step = state["step"]
        loss, st = train_step(head, opt, chunks, parts, c, cfg, step, gen, h_scale)
        state["step"] = step + 1
        now = time.perf_counter()
        state["train_seconds"] += now - t_last
        t_last = now
        state["history"].append({"step": step + 1, "loss": loss.item(), "match": st["match"]})
        bar.set_postfix(loss=f"{loss.item():.3f}", acc1=f"{st['match'][0]:.2f}")
        bar.update()
        if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.steps:
            ev = evaluate(head, heldout, parts, cfg.eval_k)
            state["evals"].append({"step": state["step"], **ev})
            bar.write(f"step {state['step']}: held-out greedy acceptance by position "
                      f"{[round(a, 3) for a in ev['acceptance_by_position']]}, mean acceptance length by k "
                      f"{ {k: round(v, 2) for k, v in ev['mean_acceptance_length'].items()} }")
            t_last = time.perf_counter()  # evaluation time is not training time
        if state["step"] % cfg.checkpoint_every == 0 or state["step"] == cfg.steps:
            state["config"] = asdict(cfg)
            save_checkpoint(out, head, opt, state)
            t_last = time.perf_counter()
    bar.close()

    drafter = MTPDrafter(head.eval(), describe_target(target), name=f"mtp({cfg.target})")
    final = state["evals"][-1] if state["evals"] else evaluate(head, heldout, parts, cfg.eval_k)
    summary = {"steps": state["step"], "seed": cfg.seed, "train_seconds": round(state["train_seconds"], 1),
               "data_seconds": round(state["data_seconds"], 1),
               "data": {"sequences": sum(d["ids"].shape[0] for d in chunks),
                        "positions": sum(d["ids"].shape[0] * (d["ids"].shape[1] - int(d["prompt_len"]) + 1)
                                         for d in chunks),
                        "temperatures": list(cfg.temperatures)},
               "vocab": int(vocab_ids.numel()), "heldout": final}
    drafter.save(out / "mtp.safetensors", extra={"training": summary})
    (out / "eval.json").write_text(json.dumps(summary, indent=1))
    return summary


# ---------------------------------------------------------------------------------------------------- CLI


def _layer_list(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer numbers such as 2,9,15 or 'none', "
                                         f"got {text!r}") from None


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("train-mtp", help="train an MTP drafter for a target by self-distillation")
    d = TrainConfig()
    p.add_argument("--target", default=d.target, help="embedded name, Hugging Face id or local folder")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--out", required=True, help="folder for data, checkpoints and the trained mtp.safetensors")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--data-only", action="store_true",
                   help="only generate the data shards (hours for 300k+ positions on 2 cores; resumable)")
    p.add_argument("--data-batches", type=int, default=d.data_batches)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences generated in parallel")
    p.add_argument("--new-tokens", type=int, default=d.new_tokens)
    p.add_argument("--vocab", type=int, default=d.vocab, help="size of the reduced vocabulary the head scores")
    p.add_argument("--layers", type=int, default=d.layers, choices=(1, 2))
    p.add_argument("--seed-set", default=d.seed_set, choices=("v1", "v2", "summaries"),
                   help="seed prompts of the shards this run adds: v1 = the first head's; v2 adds translation, code "
                        "and chat formats; summaries = article + 'Summary:' only (extra shards for that category)")
    p.add_argument("--fuse", action="store_true",
                   help="an EAGLE-3-style head: its first step reads the fused --aux-layers features")
    p.add_argument("--fuse-last", action="store_true",
                   help="with --fuse: the last hidden state is a fourth feature (lets --init-from start the fused "
                        "head from a trained unfused one)")
    p.add_argument("--init-from", default=None, metavar="MTP_SAFETENSORS",
                   help="start from this drafter's weights and vocabulary (e.g. labkit/data/mtp-gemma3-270m."
                        "safetensors) instead of a random head")
    p.add_argument("--aux-layers", type=_layer_list, default=None,
                   help="target layers whose inputs the data stores for a fused (EAGLE-3) head, e.g. 2,9,15; "
                        "'none' for none (default: EAGLE-3's low, middle and high layers)")
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--intermediate", type=int, default=None)
    p.add_argument("--unroll", type=int, default=d.unroll)
    p.add_argument("--distill-top", type=int, default=d.distill_top,
                   help="how many of the target's top probabilities per position the loss distils on (<= 32)")
    p.add_argument("--train-batch", type=int, default=d.train_batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy machine)")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise ValueError(f"--steps: must be >= 1, got {args.steps}")
    cfg = TrainConfig(target=args.target, out=args.out, steps=args.steps, seed=args.seed,
                      data_batches=args.data_batches, batch_size=args.batch_size, new_tokens=args.new_tokens,
                      vocab=args.vocab, layers=args.layers, hidden=args.hidden, intermediate=args.intermediate,
                      unroll=args.unroll, distill_top=args.distill_top, train_batch=args.train_batch, lr=args.lr,
                      eval_every=args.eval_every, aux_layers=args.aux_layers, fuse=args.fuse,
                      fuse_last=args.fuse_last,
                      init_from=args.init_from, seed_set=args.seed_set,
                      checkpoint_every=args.checkpoint_every, threads=args.threads)
    summary = train(cfg, resume=args.resume, data_only=args.data_only)
    if args.data_only:
        print(f"data in {Path(args.out) / 'data'}: {summary['shards']} shards, {summary['positions']:,} positions "
              f"({summary['data_seconds']}s this run)")
        return 0
    ev = summary["heldout"]
    print(f"wrote {Path(args.out) / 'mtp.safetensors'}: {summary['steps']} steps, data {summary['data_seconds']}s, "
          f"training {summary['train_seconds']}s; held-out greedy tokens/verify "
          f"{ {k: round(v, 2) for k, v in ev['mean_acceptance_length'].items()} }")
    return 0
