"""The draft/verify loop: prefill, then rounds of (draft k, verify all k in one target forward, accept, roll back).

Plain decoding is the same loop with no drafter (k = 0), so every comparison is like for like.
Invariant after every round: the target cache holds every committed token except the newest, which is the
first input of the next forward. A round reads the device once: the verdict and the record's statistics come back
in one transfer (gpt-fast's sync-free decoding is the model).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from labkit.core import acceptance
from labkit.core.device import sync
from labkit.core.draft_length import DraftLengthPolicy, FixedK, Plan, as_policy
from labkit.core.drafter import DraftContext, Drafter, Proposal, empty_proposal
from labkit.core.kvcache import cache_len, crop, new_cache
from labkit.core.records import GenerationResult, KVTrace, RoundRecord
from labkit.core.sampling import Sampler, SamplingConfig, warp
from labkit.models.load import Target, as_target

Hook = Callable[[RoundRecord], Any]


@dataclass
class _Run:
    """One generation's state, carried from round to round."""

    buf: torch.Tensor  # committed ids, then the round's draft: the verify input [pending, drafts] is a slice of it
    length: int  # committed tokens (prompt + generated); the target cache holds all but the newest
    cache: Any  # the target's KV cache
    hidden: torch.Tensor | None  # target's last hidden state at the position that produced the newest token
    tokens: list[int]  # the committed ids again, on the host (drafters that work on the host read these)
    budget: int  # new tokens still allowed
    eos: set[int]
    sampler: Sampler
    finished: str | None = None  # "eos" | "length" once a round ends the generation


class SpeculativeDecoder:
    """Speculative decoding of ``target`` with ``drafter`` proposing up to ``k`` tokens per round.

    ``k``: an int (the same every round), "auto" (a cost model picks k each round) or a draft-length policy from
    ``labkit.core.draft_length`` (``FixedK``, ``ConfidenceStop``, ``Heuristic``, ``CostModel``).
    ``hooks`` are callables that receive each RoundRecord as it happens; they observe, never change results.
    ``verifier`` replaces the sampling acceptance rule (for teaching and negative controls only).
    ``cache="static"`` preallocates the target's KV cache (rollback only moves its length); ``compile_mode``
    (a torch.compile mode, e.g. "reduce-overhead": CUDA graphs; or "eager": tracing only) compiles the per-round
    target forward, and needs the static cache.
    """

    def __init__(self, target: Any, drafter: Drafter | None = None, k: int | str | DraftLengthPolicy = 4,
                 hooks: Sequence[Hook] | None = None, verifier: Callable | None = None,
                 cache: str = "dynamic", compile_mode: str | None = None):
        self.target: Target = as_target(target)
        self.drafter = drafter
        self.cache, self.compile_mode = _check_cache(cache, compile_mode)
        self._compiled: Callable | None = None
        self.policy = self._policy(k)
        self.k = self.policy.k_max if isinstance(self.policy, FixedK) else self.policy
        self.hooks: list[Hook] = list(hooks or [])
        self.verifier = verifier or acceptance.sampling_verify
        dv = getattr(drafter, "vocab_size", None)
        if dv is not None and dv != self.target.vocab_size:
            raise ValueError(
                f"drafter: vocabulary size {dv} differs from the target's {self.target.vocab_size}; "
                "a drafter must share the target's vocabulary (use a model from the same family)"
            )

    def _policy(self, k: Any) -> DraftLengthPolicy:
        policy = as_policy(k)  # validated even without a drafter, which then drafts nothing
        return policy if self.drafter is not None else FixedK(0)

    @property
    def _want_hidden(self) -> bool:
        return bool(self.drafter is not None and self.drafter.needs_hidden)

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

    def _hidden(self, out: Any, at: int) -> torch.Tensor:
        """The target state a drafter reads at position ``at`` of a forward: the last hidden state, or the inputs
        of the layers the drafter names (``Drafter.hidden_layers``), concatenated."""
        layers = getattr(self.drafter, "hidden_layers", ())
        if not layers:
            return out.hidden_states[-1][0, at]
        return torch.cat([out.hidden_states[i][0, at] for i in layers], dim=-1)

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
                 k: int | str | DraftLengthPolicy | None = None,
                 eos_token_id: int | Sequence[int] | None | str = "default") -> GenerationResult:
        """Up to ``max_new_tokens`` after ``prompt``: prefill, then rounds until EOS or the limit.

        ``k`` overrides the decoder's draft length for this call (an int, "auto" or a draft-length policy).
        """
        cfg = SamplingConfig(float(temperature) if isinstance(temperature, int) else temperature, top_k, top_p)
        policy = self.policy if k is None else self._policy(k)
        if not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens: must be an integer >= 1, got {max_new_tokens!r}")
        ids = self.encode(prompt)
        limit = self.target.max_context
        if ids.numel() + max_new_tokens > limit:
            raise ValueError(f"max_new_tokens: prompt ({ids.numel()}) + max_new_tokens ({max_new_tokens}) "
                             f"exceeds the model's context of {limit} tokens")
        eos = set(self.target.eos_token_ids if eos_token_id == "default" else
                  [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else eos_token_id)

        t_start = time.perf_counter()
        run = self._prefill(ids, max_new_tokens, policy.k_max, eos, Sampler(cfg, self._generator(seed)))
        prefill_s = time.perf_counter() - t_start
        policy.reset()
        rounds: list[RoundRecord] = []
        while run.finished is None:
            record = self._round(run, policy.plan(), len(rounds))
            policy.observe(record)
            rounds.append(record)
            for hook in self.hooks:
                hook(record)
        seconds = time.perf_counter() - t_start

        new_tokens = run.tokens[ids.numel():]
        tok = self.target.tokenizer
        text = tok.decode(new_tokens, skip_special_tokens=True) if tok is not None else None
        config = {"k": policy.k_max if isinstance(policy, FixedK) else repr(policy),
                  "drafter": repr(self.drafter) if self.drafter is not None else "none",
                  "temperature": cfg.temperature, "top_k": top_k, "top_p": top_p, "seed": seed,
                  "max_new_tokens": max_new_tokens, "target": self.target.name, "dtype": str(self.target.dtype),
                  "device": str(self.target.device)}
        return GenerationResult(run.tokens[: ids.numel()], new_tokens, text, rounds, seconds, prefill_s, config)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.target.device).manual_seed(seed)

    def _prefill(self, ids: torch.Tensor, max_new_tokens: int, k_max: int, eos: set[int], sampler: Sampler) -> _Run:
        """The prompt into the target's cache (all but its last token, the first input of round 0), and the
        drafter's own state."""
        size = ids.numel() + max_new_tokens + k_max
        cache = new_cache(self.target.model, self.cache, max_len=size)
        buf = torch.empty(size, dtype=torch.long, device=self.target.device)
        buf[: ids.numel()] = ids
        hidden = None
        if ids.numel() > 1:
            out = self._forward(ids[:-1], cache, self._want_hidden, logits_to_keep=1)
            hidden = self._hidden(out, -1) if self._want_hidden else None
        if self.drafter is not None:
            self.drafter.begin(self.target, ids)
        sync(self.target.device)  # the prefill's time is read once, here
        return _Run(buf, ids.numel(), cache, hidden, ids.tolist(), max_new_tokens, eos, sampler)

    def _round(self, run: _Run, plan: Plan, index: int) -> RoundRecord:
        """Draft up to k tokens, verify them all in one target forward, keep the agreed prefix plus one token of the
        target's own, roll the rest back. Reads the device once: the verdict."""
        at, clock = run.length, _Clock(self.target.device)  # committed tokens: the draft goes to buf[at:]
        k = min(plan.k, run.budget - 1)  # never draft what could not be kept
        kv_start, dkv_start = cache_len(run.cache), self._drafter_kv()
        prop = self._draft(run, k, plan, index)
        draft = prop.tokens.reshape(-1)
        clock.drafted()
        dkv_drafted = self._drafter_kv()

        run.buf[at: at + draft.numel()] = draft
        out = self._round_forward(run.buf[at - 1: at + draft.numel()], run.cache, self._want_hidden)
        verdict = self._verify(draft, out.logits[0], prop, run.sampler)  # the round's one host transfer
        emitted, run.finished = _cut(verdict.drafted[: verdict.accepted] + [verdict.next_token], run.eos, run.budget)
        kept = len(emitted) - 1  # drafts kept (fewer than accepted only when EOS or the limit cut the round)
        kv_verified = cache_len(run.cache)
        crop(run.cache, at + kept)  # the pending token and the kept drafts stay; rejected positions go
        if self._want_hidden:
            run.hidden = self._hidden(out, kept).clone()  # a compiled graph reuses its output memory
        clock.verified()
        if self.drafter is not None:
            self.drafter.rollback(kept)  # timed as drafting: it is the drafter's own bookkeeping
        clock.rolled_back()

        run.buf[at + kept] = emitted[-1]  # the kept drafts are already in place
        run.tokens.extend(emitted)
        run.length, run.budget = at + len(emitted), run.budget - len(emitted)
        target_kv = KVTrace(kv_start, kv_start, kv_verified, cache_len(run.cache))
        drafter_kv = None if dkv_start is None else KVTrace(dkv_start, dkv_drafted, dkv_drafted, self._drafter_kv())
        reason = self._draft_reason(plan, k, draft, run)
        if prop.note:
            reason = f"{prop.note}; {reason}"
        return _record(index, at, verdict, emitted, run.finished, prop, k, reason, target_kv, drafter_kv, clock)

    def _draft(self, run: _Run, k: int, plan: Plan, index: int) -> Proposal:
        if self.drafter is None:
            return empty_proposal(self.target.device)
        run.sampler.start_round(plan.min_confidence, plan.stop_rule)
        ctx = DraftContext(run.buf[: run.length], self.target, run.cache, run.hidden, index, run.tokens)
        prop = self.drafter.propose(ctx, k, run.sampler)
        if prop.tokens.numel() > k:
            raise RuntimeError(f"{self.drafter!r} proposed {prop.tokens.numel()} tokens, more than k={k}")
        return prop

    def _verify(self, draft: torch.Tensor, logits: torch.Tensor, prop: Proposal, sampler: Sampler
                ) -> acceptance.Verdict:
        """Greedy: the longest prefix matching the target's argmax; sampling: the lossless rejection rule."""
        if sampler.greedy:
            q_tokens = prop.q_tokens
            if q_tokens is None and prop.q is not None:  # a drafter that reports full distributions only
                q_tokens = prop.q[torch.arange(draft.numel(), device=draft.device), draft]
            return acceptance.greedy_verify(draft, logits, q_tokens)
        verdict = self.verifier(draft, warp(logits, sampler.cfg), prop.q, sampler.generator)
        return verdict if verdict.drafted is not None else replace(verdict, drafted=draft.tolist())

    def _drafter_kv(self) -> int | None:
        return self.drafter.kv_length() if self.drafter is not None else None

    def _draft_reason(self, plan: Plan, k: int, draft: torch.Tensor, run: _Run) -> str:
        if self.drafter is None:
            return "no drafter"
        if run.sampler.stopped is not None:
            position, q = run.sampler.stopped
            if plan.stop_rule is not None:
                return plan.stop_rule.why(position, q)
            return f"confidence {q:.2f} < {plan.min_confidence:g} at position {position}"
        reason = plan.reason + (f"; cut to {k} by max_new_tokens" if k < plan.k else "")
        if (plan.min_confidence is not None or plan.stop_rule is not None) and run.sampler.checked < draft.numel():
            reason += f"; {self.drafter!r} does not check its confidence"  # deterministic, or not updated
        return reason + (f"; the drafter proposed {draft.numel()}" if draft.numel() < k else "")


def _record(index: int, context_len: int, v: acceptance.Verdict, emitted: list[int], finished: str | None,
            prop: Proposal, k: int, reason: str, target_kv: KVTrace, drafter_kv: KVTrace | None,
            clock: _Clock) -> RoundRecord:
    drafted = len(v.drafted)
    draft_s, verify_s = clock.seconds()
    return RoundRecord(
        index=index, context_len=context_len, drafted=v.drafted, p=v.p, q=v.q, u=v.u, margin=v.margin,
        accepted=v.accepted, rejected_at=v.accepted if v.accepted < drafted else None,
        next_token=v.next_token, next_kind=_next_kind(drafted, v.accepted), emitted=emitted,
        target_kv=target_kv, drafter_kv=drafter_kv, draft_seconds=draft_s, verify_seconds=verify_s,
        finished=finished, reused_target_state=prop.reused_target_state, k_requested=k, draft_reason=reason,
    )


class _Clock:
    """A round's timings without extra device syncs.

    CPU: perf_counter. GPU: the host does not wait for the draft to finish, so the draft's time is the span between
    two CUDA events (both complete once the verdict's transfer has waited for the verify behind them); the verify's
    is the rest of the wall time up to the verdict.
    """

    def __init__(self, device: torch.device):
        self.events = None
        if device.type == "cuda":
            self.events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self.events[0].record()
        self.start = time.perf_counter()

    def drafted(self) -> None:
        if self.events is not None:
            self.events[1].record()
        self.t_drafted = time.perf_counter()

    def verified(self) -> None:
        self.t_verified = time.perf_counter()

    def rolled_back(self) -> None:
        self.t_rolled_back = time.perf_counter()

    def seconds(self) -> tuple[float, float]:
        """(draft, verify) seconds; the drafter's rollback counts as drafting."""
        draft = (self.events[0].elapsed_time(self.events[1]) / 1e3 if self.events is not None
                 else self.t_drafted - self.start)
        return draft + (self.t_rolled_back - self.t_verified), (self.t_verified - self.start) - draft


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


def _check_cache(cache: str, compile_mode: str | None) -> tuple[str, str | None]:
    if cache not in ("dynamic", "static"):
        raise ValueError(f"cache: must be 'dynamic' or 'static', got {cache!r}")
    if compile_mode is not None and cache != "static":
        raise ValueError("compile_mode: needs cache='static' (a compiled graph needs fixed cache shapes)")
    return cache, compile_mode


def plain_decoder(target: Any, hooks: Sequence[Hook] | None = None) -> SpeculativeDecoder:
    """Plain decoding through the same loop (no drafter, one token per target forward)."""
    return SpeculativeDecoder(target, None, k=0, hooks=hooks)
