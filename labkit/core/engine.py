"""The draft/verify loop: prefill, then rounds of (draft k, verify all k in one target forward, accept, roll back).

Plain decoding is the same loop with no drafter (k = 0), so every comparison is like for like.
Invariant after every round: the target cache holds every committed token except the newest, which is the
first input of the next forward.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from labkit.core import acceptance
from labkit.core.kvcache import cache_len, crop, new_cache
from labkit.core.records import GenerationResult, KVTrace, RoundRecord
from labkit.core.sampling import MAX_K, Sampler, SamplingConfig, warp
from labkit.drafters.base import DraftContext, Drafter, empty_proposal
from labkit.models.load import Target, as_target

Hook = Callable[[RoundRecord], Any]


class SpeculativeDecoder:
    """Speculative decoding of ``target`` with ``drafter`` proposing ``k`` tokens per round.

    ``hooks`` are callables that receive each RoundRecord as it happens; they observe, never change results.
    ``verifier`` replaces the sampling acceptance rule (for teaching and negative controls only).
    ``cache="static"`` preallocates the target's KV cache (rollback only moves its length); ``compile_mode``
    (a torch.compile mode, e.g. "reduce-overhead": CUDA graphs; or "eager": tracing only) compiles the per-round
    target forward, and needs the static cache.
    """

    def __init__(self, target: Any, drafter: Drafter | None = None, k: int = 4,
                 hooks: Sequence[Hook] | None = None, verifier: Callable | None = None,
                 cache: str = "dynamic", compile_mode: str | None = None):
        self.target: Target = as_target(target)
        self.drafter = drafter
        self.cache, self.compile_mode = _check_cache(cache, compile_mode, drafter)
        self._compiled: Callable | None = None
        self.k = _check_k(k) if drafter is not None else _check_k(k) * 0
        self.hooks: list[Hook] = list(hooks or [])
        self.verifier = verifier or acceptance.sampling_verify
        dv = getattr(drafter, "vocab_size", None)
        if dv is not None and dv != self.target.vocab_size:
            raise ValueError(
                f"drafter: vocabulary size {dv} differs from the target's {self.target.vocab_size}; "
                "a drafter must share the target's vocabulary (use a model from the same family)"
            )

    def add_hook(self, hook: Hook) -> None:
        self.hooks.append(hook)

    def encode(self, prompt: Any) -> torch.Tensor:
        """A prompt as a 1-D long tensor on the target's device (str, list of ids, 1-D or [1, T] tensor)."""
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("prompt: must be a non-empty string, list of token ids or tensor")
            if self.target.tokenizer is None:
                raise ValueError("prompt: this target has no tokenizer; pass token ids instead of a string")
            ids = torch.tensor(self.target.tokenizer(prompt)["input_ids"], dtype=torch.long)
        else:
            ids = torch.as_tensor(prompt, dtype=torch.long)
            if ids.dim() == 2:
                if ids.shape[0] != 1:
                    raise ValueError(f"prompt: batch size must be 1, got shape {tuple(ids.shape)}")
                ids = ids[0]
            if ids.dim() != 1:
                raise ValueError(f"prompt: expected 1-D or [1, T] ids, got shape {tuple(ids.shape)}")
        if ids.numel() == 0:
            raise ValueError("prompt: must be a non-empty string, list of token ids or tensor")
        v = self.target.vocab_size
        if int(ids.min()) < 0 or int(ids.max()) >= v:
            raise ValueError(f"prompt: token ids must be in 0..{v - 1}")
        return ids.to(self.target.device)

    def _forward(self, ids: torch.Tensor, cache: Any, want_hidden: bool, logits_to_keep: int = 0):
        return self.target.model(input_ids=ids[None], cache=cache, use_cache=True,
                                 output_hidden_states=want_hidden, logits_to_keep=logits_to_keep)

    def _round_forward(self, ids: torch.Tensor, cache: Any, want_hidden: bool):
        """The per-round forward: compiled when asked (one graph per input length; prefill stays eager)."""
        if self.compile_mode is None:
            return self._forward(ids, cache, want_hidden)
        if self._compiled is None:  # "eager": dynamo tracing only, no code generation (fast; for tests)
            how = {"backend": "eager"} if self.compile_mode == "eager" else {"mode": self.compile_mode}
            # dynamic=None: the cache length (a Python int in sliding layers) becomes symbolic after one
            # recompile instead of forcing a recompile per round
            self._compiled = torch.compile(self.target.model.forward, **how)
        start = cache_len(cache)  # explicit positions: otherwise the model derives them from that int
        pos = torch.arange(start, start + ids.numel(), device=ids.device)[None]
        return self._compiled(input_ids=ids[None], position_ids=pos, cache=cache, use_cache=True,
                              output_hidden_states=want_hidden)

    @torch.inference_mode()
    def generate(self, prompt: Any, max_new_tokens: int = 64, temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int = 0,
                 k: int | None = None, eos_token_id: int | Sequence[int] | None | str = "default",
                 ) -> GenerationResult:
        cfg = SamplingConfig(float(temperature) if isinstance(temperature, int) else temperature, top_k, top_p)
        k = self.k if k is None else (_check_k(k) if self.drafter is not None else 0)
        if not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens: must be an integer >= 1, got {max_new_tokens!r}")
        ids = self.encode(prompt)
        limit = self.target.max_context
        if ids.numel() + max_new_tokens > limit:
            raise ValueError(f"max_new_tokens: prompt ({ids.numel()}) + max_new_tokens ({max_new_tokens}) "
                             f"exceeds the model's context of {limit} tokens")
        eos = set(self.target.eos_token_ids if eos_token_id == "default" else
                  [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else eos_token_id)
        dev = self.target.device
        gen = torch.Generator(device=dev).manual_seed(seed)
        sampler = Sampler(cfg, gen)
        drafter = self.drafter
        want_hidden = bool(drafter is not None and drafter.needs_hidden)
        sync = _synchronizer(dev)

        t_start = time.perf_counter()
        cache = new_cache(self.target.model, self.cache, max_len=ids.numel() + max_new_tokens + k)
        # committed ids, then the round's drafts: the verify input [pending, drafts] is a slice, never a concatenation
        buf = torch.empty(ids.numel() + max_new_tokens + k, dtype=torch.long, device=dev)
        buf[: ids.numel()] = ids
        hidden = None
        if ids.numel() > 1:  # prefill all but the last prompt token: it is the first input of round 0
            out = self._forward(ids[:-1], cache, want_hidden, logits_to_keep=1)
            hidden = out.hidden_states[-1][0, -1] if want_hidden else None
        if drafter is not None:
            drafter.begin(self.target, ids)
        sync()
        prefill_s = time.perf_counter() - t_start

        L, new_tokens, rounds, finished = ids.numel(), [], [], None
        while finished is None:
            remaining = max_new_tokens - len(new_tokens)
            kk = min(k, remaining - 1)  # never draft what could not be kept
            committed = buf[:L]
            kv0 = cache_len(cache)
            dkv0 = drafter.kv_length() if drafter is not None else None

            t0 = time.perf_counter()
            if drafter is not None:
                prop = drafter.propose(DraftContext(committed, self.target, cache, hidden, len(rounds)), kk, sampler)
                if prop.tokens.numel() > kk:
                    raise RuntimeError(f"{drafter!r} proposed {prop.tokens.numel()} tokens, more than k={kk}")
            else:
                prop = empty_proposal(dev)
            draft = prop.tokens.reshape(-1)
            sync()
            t1 = time.perf_counter()
            dkv1 = drafter.kv_length() if drafter is not None else None

            buf[L: L + draft.numel()] = draft
            out = self._round_forward(buf[L - 1: L + draft.numel()], cache, want_hidden)
            logits = out.logits[0]
            if cfg.greedy:
                v = acceptance.greedy_verify(draft, logits, prop.q)
            else:
                v = self.verifier(draft, warp(logits, cfg), prop.q, gen)
            kv2 = cache_len(cache)
            emitted, finished = _cut(draft[: v.accepted].tolist() + [v.next_token], eos, remaining)
            kept = len(emitted) - 1  # drafts kept (fewer than accepted only when EOS or the limit cut the round)
            crop(cache, L + kept)  # the pending token and the kept drafts stay; rejected positions go
            if want_hidden:
                hidden = out.hidden_states[-1][0, kept].clone()  # a compiled graph reuses its output memory
            sync()
            t2 = time.perf_counter()
            if drafter is not None:
                drafter.rollback(kept)  # timed as drafting: it is the drafter's own bookkeeping
            sync()
            t3 = time.perf_counter()

            new_tokens.extend(emitted)
            buf[L + kept] = emitted[-1]  # the kept drafts are already in place

            record = RoundRecord(
                index=len(rounds), context_len=L, drafted=draft.tolist(), p=v.p, q=v.q, u=v.u, margin=v.margin,
                accepted=v.accepted, rejected_at=v.accepted if v.accepted < draft.numel() else None,
                next_token=v.next_token, next_kind=_next_kind(draft.numel(), v.accepted),
                emitted=emitted,
                target_kv=KVTrace(kv0, kv0, kv2, cache_len(cache)),
                drafter_kv=None if dkv0 is None else KVTrace(dkv0, dkv1, dkv1, drafter.kv_length()),
                draft_seconds=(t1 - t0) + (t3 - t2), verify_seconds=t2 - t1, finished=finished,
                reused_target_state=prop.reused_target_state,
            )
            rounds.append(record)
            for hook in self.hooks:
                hook(record)
            L += len(emitted)

        seconds = time.perf_counter() - t_start
        tok = self.target.tokenizer
        text = tok.decode(new_tokens, skip_special_tokens=True) if tok is not None else None
        config = {"k": k, "drafter": repr(drafter) if drafter is not None else "none",
                  "temperature": cfg.temperature, "top_k": top_k, "top_p": top_p, "seed": seed,
                  "max_new_tokens": max_new_tokens, "target": self.target.name, "dtype": str(self.target.dtype),
                  "device": str(dev)}
        return GenerationResult(ids.tolist(), new_tokens, text, rounds, seconds, prefill_s, config)


def _next_kind(drafted: int, accepted: int) -> str:
    return "plain" if drafted == 0 else "bonus" if accepted == drafted else "replacement"


def _cut(emitted: list[int], eos: set[int], remaining: int) -> tuple[list[int], str | None]:
    """Stop at the first EOS or at the token budget, even when either falls inside the accepted draft."""
    for i, tok in enumerate(emitted):
        if tok in eos:
            return emitted[: i + 1], "eos"
    if len(emitted) >= remaining:
        return emitted[:remaining], "length"
    return emitted, None


def _check_k(k: Any) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= MAX_K:
        raise ValueError(f"k: must be an integer in 0..{MAX_K} (draft tokens per round), got {k!r}")
    return k


def _check_cache(cache: str, compile_mode: str | None, drafter: Drafter | None) -> tuple[str, str | None]:
    if cache not in ("dynamic", "static"):
        raise ValueError(f"cache: must be 'dynamic' or 'static', got {cache!r}")
    if compile_mode is not None and cache != "static":
        raise ValueError("compile_mode: needs cache='static' (a compiled graph needs fixed cache shapes)")
    if cache == "static" and drafter is not None and drafter.needs_hidden:
        raise ValueError(f"cache='static': {drafter!r} reads the target's cache, which it supports only as a "
                         "dynamic cache; use cache='dynamic'")
    return cache, compile_mode


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """Timers read after a device sync on GPU; on CPU the work is already done when the call returns."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def plain_decoder(target: Any, hooks: Sequence[Hook] | None = None) -> SpeculativeDecoder:
    """Plain decoding through the same loop (no drafter, one token per target forward)."""
    return SpeculativeDecoder(target, None, k=0, hooks=hooks)
