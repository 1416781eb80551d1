"""Self-distillation data: the target continues seed prompts and records what an MTP head needs to learn from.

Text the target generates itself from varied seed prompts (``labkit.training.seeds``), many sequences in parallel
(64 at once cost ~31 ms per token on a loaded 2-core CPU, one stream ~160 ms). Acceptance is decided by the target's
own distribution, so its own text and its own hidden states, K/V and next-token distributions are exactly what the
drafter meets at decoding time. Batches alternate greedy and sampled continuations: greedy text is what a greedy
benchmark sees, sampled text (T = 0.5, 0.7, 1.0) adds variety.

Every generation step records, for each new position: the token, the target's last hidden state, the K/V of the
layers an MTP head reads (in the cache at the end) and the target's top-32 next-token probabilities.

Held-out data: greedy continuations of prompts never trained on (``seeds.HELDOUT``); on greedy text a draft is
accepted exactly when it equals the next data token.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from labkit.models.geometry import kv_source_layers, text_config
from labkit.models.load import Target
from labkit.training.config import TrainConfig

TOP = 32  # target probabilities stored per position; training distils on the first `distill_top` of them


def aux_layers_for(model: Any, aux_layers: tuple[int, ...] | None) -> tuple[int, ...]:
    """The target layers whose input features EAGLE-3 fuses: (2, L // 2, L - 3) unless given."""
    if aux_layers is not None:
        return tuple(aux_layers)
    n = text_config(model).num_hidden_layers
    return tuple(sorted({min(2, n - 1), n // 2, max(0, n - 3)}))


def _left_pad(prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids [B, P] left-padded, start [B] (first real token), attention mask [B, P]."""
    B, P = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((B, P), pad, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.tensor(p)
    start = torch.tensor([P - len(p) for p in prompts])
    return ids, start, (torch.arange(P)[None] >= start[:, None]).long()


def _next_token(logits: torch.Tensor, temperature: float, step: int, sampled_prefix: torch.Tensor | None,
                gen: torch.Generator) -> torch.Tensor:
    """Greedy (rows still inside their ``sampled_prefix`` draw at T = 1) or sampled at ``temperature``."""
    if temperature != 0:
        return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen)
    nxt = logits.argmax(-1, keepdim=True)
    if sampled_prefix is not None and bool((sampled_prefix > step).any()):
        drawn = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
        nxt = torch.where((sampled_prefix > step)[:, None].to(nxt.device), drawn, nxt)
    return nxt


class _Recorder:
    """Per forward, on the CPU: the last hidden state, the aux layers' inputs, the top-TOP next-token probabilities."""

    def __init__(self, aux_layers: tuple[int, ...]):
        self.hidden: list[torch.Tensor] = []
        self.top_ids: list[torch.Tensor] = []
        self.top_p: list[torch.Tensor] = []
        self.aux: dict[int, list[torch.Tensor]] = {i: [] for i in aux_layers}

    def __call__(self, out: Any) -> torch.Tensor:
        self.hidden.append(out.hidden_states[-1].to("cpu", torch.bfloat16))
        for i, kept in self.aux.items():
            kept.append(out.hidden_states[i].to("cpu", torch.bfloat16))
        logits = out.logits[:, -1].float()
        top = torch.log_softmax(logits, -1).topk(min(TOP, logits.shape[-1]), dim=-1)
        self.top_ids.append(top.indices.int().cpu())
        self.top_p.append(top.values.exp().cpu())
        return logits

    def tensors(self, ids: torch.Tensor, start: torch.Tensor, P: int) -> dict[str, torch.Tensor]:
        B, S = ids.shape
        width = self.top_ids[0].shape[-1]
        top_ids = torch.zeros(B, S, width, dtype=torch.int32)
        top_p = torch.zeros(B, S, width)
        top_ids[:, P - 1:] = torch.stack(self.top_ids, dim=1)  # position P-1 from the prefill, then one per token
        top_p[:, P - 1:] = torch.stack(self.top_p, dim=1)
        data = {"ids": ids, "start": start, "hidden": torch.cat(self.hidden, dim=1),
                "top_ids": top_ids, "top_p": top_p.to(torch.bfloat16), "prompt_len": torch.tensor(P)}
        for i, kept in self.aux.items():
            data[f"hidden.{i}"] = torch.cat(kept, dim=1)
        return data


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

    model, dev = target.model, target.device
    ids, start, attn = _left_pad(prompts, text_config(model).pad_token_id or 0)
    gen = torch.Generator(device=dev).manual_seed(seed)
    cache = DynamicCache(config=model.config)
    cache.activate_past_recording()  # sliding layers keep every position (never cropped here): training needs them
    record = _Recorder(aux_layers)

    def forward(x: torch.Tensor, mask: torch.Tensor) -> Any:
        pos = (mask.cumsum(-1) - 1).clamp_min(0)[:, -x.shape[1]:]
        return model(input_ids=x.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                     cache=cache, use_cache=True, output_hidden_states=True, logits_to_keep=1)

    logits = record(forward(ids, attn))
    seq = [ids]
    for step in tqdm(range(new_tokens), desc=desc, disable=not progress, leave=False):
        nxt = _next_token(logits, temperature, step, sampled_prefix, gen).cpu()
        seq.append(nxt)
        attn = torch.cat([attn, torch.ones(len(prompts), 1, dtype=torch.long)], dim=1)
        logits = record(forward(nxt, attn))
    data = record.tensors(torch.cat(seq, dim=1), start, ids.shape[1])
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


def labelled_positions(chunks: list[dict[str, torch.Tensor]]) -> int:
    """Positions that carry a label: from the last prompt token on, in every sequence."""
    return sum(d["ids"].shape[0] * (d["ids"].shape[1] - int(d["prompt_len"]) + 1) for d in chunks)


def _save_atomic(data: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Written under another name, then renamed: a run started next to this one never reads half a file."""
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file(data, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _write_shard(cfg: TrainConfig, target: Target, i: int, path: Path, progress: bool) -> None:
    """Training shard ``i``: batch_size seed prompts continued at the i-th temperature of the cycle."""
    seed = cfg.seed * 1000 + i
    prompts = seed_prompts(target, False, cfg.batch_size, seed, cfg.seed_set)
    temp = cfg.temperatures[i % len(cfg.temperatures)]
    prefix = None
    if temp == 0 and cfg.greedy_prefix > 0:
        prefix = torch.randint(0, cfg.greedy_prefix + 1, (len(prompts),),
                               generator=torch.Generator().manual_seed(seed))
    d = self_generate(target, prompts, cfg.new_tokens, temp, seed, progress,
                      desc=f"shard {i + 1}/{cfg.data_batches} (T={temp})", sampled_prefix=prefix,
                      aux_layers=aux_layers_for(target.model, cfg.aux_layers))
    _save_atomic(d, path, {"temperature": str(temp), "greedy_prefix": str(cfg.greedy_prefix),
                           "seed_set": cfg.seed_set})


def prepare_data(cfg: TrainConfig, target: Target, out: Path, progress: bool) -> tuple[list[dict], dict, float]:
    """Generate (or reload) the training chunks and the held-out set; returns them and the seconds spent."""
    from safetensors.torch import load_file
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    (out / "data").mkdir(parents=True, exist_ok=True)
    chunks = []
    paths = [out / "data" / f"train-{i}.safetensors" for i in range(cfg.data_batches)]
    done = sum(p.exists() for p in paths)
    per_shard = cfg.batch_size * (cfg.new_tokens + 1)
    # One shard per batch, written atomically: an interrupted run resumes at the first missing shard.
    bar = tqdm(total=cfg.data_batches * per_shard, initial=done * per_shard, unit="pos", unit_scale=True,
               desc="self-distillation data", disable=not progress or done == cfg.data_batches)
    for i, path in enumerate(paths):
        if not path.exists():
            _write_shard(cfg, target, i, path, progress)
            bar.update(per_shard)
        chunks.append(load_file(str(path)))
    bar.close()
    path = out / "data" / "heldout.safetensors"
    if not path.exists():
        n = 16 if target.tokenizer is not None else 8
        d = self_generate(target, seed_prompts(target, True, n, cfg.seed), cfg.heldout_tokens, 0.0, cfg.seed,
                          progress, desc="held-out (greedy)", aux_layers=aux_layers_for(target.model, cfg.aux_layers))
        _save_atomic(d, path, {"temperature": "0"})
    return chunks, load_file(str(path)), time.perf_counter() - t0
