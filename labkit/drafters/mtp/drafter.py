"""MTP drafter with the architecture of Gemma 4's "assistant": it drafts from the target's own state.

Per draft step (all steps of a round use the same position id, that of the last committed token, as Gemma 4 does):

    x = pre_projection(concat(target_input_embedding(last token), last hidden state))
    x = 1-2 decoder layers whose queries attend to the TARGET's K/V cache (no K/V of their own)
    g = post_projection(norm(x))          # a prediction of the target's next last hidden state
    logits = g @ E[candidates]^T          # the target's own (tied) LM head, on a reduced candidate set

``g`` is fed back as "the last hidden state" of the next step. The first step reads the real hidden state the
target computed for the position that produced the pending token (``ctx.hidden``).

How drafted tokens 2..k see earlier drafts: only through that chained hidden state ``g`` and the input embedding of
the previous draft token. Gemma 4's assistant never writes drafted tokens to any cache, and neither does this
drafter: every step attends to the same target K/V (the committed tokens except the pending one; the pending
token itself enters through its embedding). So the drafter has no cache, needs no prefill and has nothing to roll
back; its cost per step does not grow with k.

Which target K/V: one head layer per attention type, reading the last target layer of that type ("sliding_attention"
reads the last sliding-window layer, trimmed to the window; "full_attention" the last global layer), the layers
Gemma 4 exposes as ``shared_kv_states``.

The LM head differs from Gemma 4's on purpose: Gemma 4's assistant has its own embedding table at its own width;
here logits come from the target's LM head applied to ``g``, which makes ``g`` mean "the target's next hidden
state" (trainable by regression, see ``training.objective``) and costs no extra vocabulary matrix. Scoring the full
262k vocabulary would cost about as much as the whole 270M target on a CPU, so only candidates are scored: the
``vocab_ids`` frequent in the target's own text, plus every token already in the context (greedy continuations
copy names and rare words from their prompt; no frequency list holds them). Measured against Gemma 4's centroid
clusters in ``labkit/data/MODEL_CARD.md``. q is exactly zero outside the candidates, and verification stays
lossless because q is the distribution the draft was really drawn from.

Weights are stored as safetensors only, with metadata naming the target they were trained for (name, hidden size,
vocabulary size, tokenizer fingerprint, sign pattern of its embedding); ``begin`` checks them against the target.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from labkit.core.sampling import Sampler
from labkit.drafters.base import DraftContext, Drafter, DraftSteps, Proposal, empty_proposal
from labkit.drafters.mtp.network import MTPConfig, MTPHead
from labkit.drafters.mtp.weights import (
    FORMAT,
    FORMAT_VERSION,
    SHIPPED,
    SIGN_AGREEMENT,
    MTPWeightsError,
    describe_target,
    embedding_signs,
    sign_agreement,
    vocab_fingerprint,
)
from labkit.models.geometry import kv_source_layers, target_kv, text_config
from labkit.models.load import Target


class MTPDrafter(Drafter):
    """Drafts k tokens from the target's last hidden state and K/V cache; keeps no state between rounds."""

    needs_hidden = True

    def __init__(self, head: MTPHead, meta: dict[str, str] | None = None, name: str = "mtp"):
        self.head = head.eval()
        self.meta = dict(meta or {})
        self.name = name
        self.vocab_size = head.config.vocab_size
        self.hidden_layers = tuple(head.config.fuse_layers or ())  # the target features the engine hands over
        self._bound: Any = None  # the target model the head was last prepared for
        self._run: MTPHead | None = None

    # ---------------------------------------------------------------- construction

    @classmethod
    def random_init(cls, target: Any, layers: int = 2, hidden: int | None = None, seed: int = 0,
                    vocab_ids: torch.Tensor | None = None, context_tokens: bool = True) -> MTPDrafter:
        """An untrained head for ``target`` (tests, what-ifs): the same code path as trained weights."""
        from labkit.models.load import as_target

        t = as_target(target)
        c = MTPConfig.for_target(t.model, layers=layers, hidden=hidden)
        c.context_tokens = context_tokens
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = MTPHead(c, vocab_ids)
        return cls(head, describe_target(t), name=f"mtp(random, L={layers})")

    @classmethod
    def pretrained(cls, name: str = "gemma3-270m") -> MTPDrafter:
        """The weights shipped with labkit for an embedded target."""
        if name not in SHIPPED:
            raise MTPWeightsError(f"mtp: no shipped weights for {name!r}; available: {sorted(SHIPPED)}. "
                                  f"Train some with `labkit train-mtp --target {name} --out DIR`")
        path = Path(str(resources.files("labkit").joinpath("data", SHIPPED[name])))
        drafter = cls.load(path)
        drafter.name = f"mtp({name})"
        return drafter

    @classmethod
    def load(cls, path: str | Path) -> MTPDrafter:
        """Weights from a safetensors file written by ``save`` (never pickle)."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise MTPWeightsError(f"mtp: weight file {path} not found; reinstall labkit, or train one with "
                                  "`labkit train-mtp --out DIR` and load DIR/mtp.safetensors")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as e:
            raise MTPWeightsError(f"mtp: weight file {path} is corrupt or not safetensors ({str(e)[:80]}); "
                                  "delete it and reinstall labkit or retrain with `labkit train-mtp`") from None
        if meta.get("format") != FORMAT:
            raise MTPWeightsError(f"mtp: {path} is not a labkit MTP weight file (format={meta.get('format')!r}); "
                                  "expected one written by `labkit train-mtp`")
        ids = tensors.get("vocab_ids")
        if ids is not None and ids.unique().numel() != ids.numel():
            raise MTPWeightsError(f"mtp: {path} lists {ids.numel() - ids.unique().numel()} token ids more than once "
                                  "in vocab_ids (q would count them twice); the file is damaged: retrain with "
                                  "`labkit train-mtp`")
        try:
            c = MTPConfig(**json.loads(meta["config"]))
            head = MTPHead(c, tensors["vocab_ids"])
            head.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
        except (KeyError, TypeError, RuntimeError, json.JSONDecodeError) as e:
            raise MTPWeightsError(f"mtp: {path} has missing or mismatched tensors ({str(e).splitlines()[0][:100]}); "
                                  "the file is damaged or from another version: retrain with `labkit train-mtp`"
                                  ) from None
        return cls(head, meta, name=f"mtp({meta.get('target', path.stem)})")

    def save(self, path: str | Path, extra: dict[str, Any] | None = None, dtype: torch.dtype = torch.bfloat16) -> None:
        """Write safetensors with the target description in the metadata (strings only, as safetensors requires)."""
        from safetensors.torch import save_file

        meta = {**self.meta, "format": FORMAT, "format_version": FORMAT_VERSION,
                "config": json.dumps(asdict(self.head.config))}
        for k, v in (extra or {}).items():
            meta[k] = v if isinstance(v, str) else json.dumps(v)
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v.to(torch.int32)).contiguous()
                   for k, v in self.head.state_dict().items()}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def from_assistant(cls, assistant: Any = "google/gemma-4-E2B-it-assistant", **kwargs: Any) -> Drafter:
        """transformers' Gemma 4 assistant (a model or a Hugging Face id) driven by labkit's loop."""
        from labkit.drafters.gemma4_assistant import Gemma4AssistantDrafter

        return Gemma4AssistantDrafter.load(assistant, **kwargs)

    # ---------------------------------------------------------------- protocol

    def check(self, target: Target) -> None:
        """Raise MTPWeightsError when these weights were trained for another target."""
        m, c = self.meta, self.head.config
        tname = m.get("target", "?")
        fix = f"train weights for it with `labkit train-mtp --target {target.name}`"
        hidden = text_config(target.model).hidden_size
        if hidden != c.backbone_hidden:
            raise MTPWeightsError(f"mtp: weights were trained for target {tname!r} (hidden size {c.backbone_hidden}); "
                                  f"{target.name!r} has hidden size {hidden}: {fix}")
        if target.vocab_size != c.vocab_size:
            raise MTPWeightsError(f"mtp: weights were trained for target {tname!r} (vocabulary {c.vocab_size}); "
                                  f"{target.name!r} has vocabulary {target.vocab_size}: {fix}")
        fp = m.get("vocab_fingerprint", "none")
        if fp != "none" and target.tokenizer is not None and fp != vocab_fingerprint(target.tokenizer, c.vocab_size):
            raise MTPWeightsError(f"mtp: weights were trained for target {tname!r} whose tokenizer differs from "
                                  f"{target.name!r}'s (vocabulary fingerprint {fp}): {fix}")
        signs = m.get("embedding_signs")
        if signs and sign_agreement(signs, embedding_signs(target.model)) < SIGN_AGREEMENT:
            raise MTPWeightsError(f"mtp: weights were trained for target {tname!r}, but {target.name!r} has other "
                                  f"embedding weights (a different model of the same shape): {fix}")

    def begin(self, target: Target, prompt_ids: torch.Tensor) -> None:
        if self._bound is not target.model:
            self._bind(target)
        self._reset_candidates()

    def _bind(self, target: Target) -> None:
        """Check compatibility once per target, then cache what every step needs in the target's dtype."""
        self.check(target)
        model = target.model
        self._run = MTPHead(self.head.config, self.head.vocab_ids)
        self._run.load_state_dict(self.head.state_dict())
        self._run = self._run.to(device=target.device, dtype=target.dtype).eval()
        self._lm_head = model.get_output_embeddings().weight.detach()
        self._static_ids = self.head.vocab_ids.to(target.device)
        self._static_rows = self._lm_head[self._static_ids].contiguous()
        self._static_set = set(self.head.vocab_ids.tolist())
        self._embed = model.get_input_embeddings()
        self._rotary = model.model.rotary_emb
        self._kv_layers = {k: v for k, v in kv_source_layers(model).items() if k in self.head.config.layer_types}
        self._bound = model
        self._reset_candidates()

    def _reset_candidates(self) -> None:
        self._cand_ids, self._cand_rows = self._static_ids, self._static_rows
        self._extra: set[int] = set()
        self._seen = 0  # committed tokens already folded into the candidate set

    def _candidates(self, ids: torch.Tensor, host_ids: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """vocab_ids plus every committed token outside them (first-seen order), and their LM-head rows.

        A greedy continuation often repeats a word of its context that no frequency list holds (a name, a rare
        noun); scoring the context's tokens too costs a few hundred rows and is how training scored them.
        """
        if not self.head.config.context_tokens:
            return self._cand_ids, self._cand_rows
        if ids.numel() < self._seen:  # a new generation without begin(): start over
            self._reset_candidates()
        known = self._static_set
        fresh = host_ids[self._seen:] if host_ids is not None else ids[self._seen:].tolist()  # no device read
        new = [t for t in dict.fromkeys(fresh) if t not in known and t not in self._extra]
        self._seen = ids.numel()
        if new:
            self._extra.update(new)
            add = torch.tensor(new, device=ids.device)
            self._cand_ids = torch.cat([self._cand_ids, add])
            self._cand_rows = torch.cat([self._cand_rows, self._lm_head[add]])
        return self._cand_ids, self._cand_rows

    @torch.inference_mode()
    def propose(self, ctx: DraftContext, k: int, sampler: Sampler) -> Proposal:
        if k == 0 or ctx.hidden is None:  # a one-token prompt: no target state yet to draft from
            return empty_proposal(ctx.ids.device)
        if self._bound is not ctx.target.model:
            self._bind(ctx.target)
        head = self._run
        kv = target_kv(ctx.target_cache, self._kv_layers, head.config.sliding_window, ctx.ids.numel() - 1)
        pos = torch.full((1, 1), ctx.ids.numel() - 1, device=ctx.ids.device)  # fixed for every step of the round
        h = head.first_state(ctx.hidden.reshape(1, 1, -1))
        rope = {kind: self._rotary(h, pos, kind) for kind in head.config.layer_types}
        cand_ids, cand_rows = self._candidates(ctx.ids, ctx.tokens)
        tok = ctx.ids[-1:]
        steps = DraftSteps(sampler)
        for _ in range(k):
            h = head(self._embed(tok[None]), h, kv, rope)
            z = head.logits(h[0, 0], cand_rows)
            j, q = sampler.pick(z)  # argmax (greedy) or a seeded draw from the warped q over the candidates
            tok = cand_ids[j]
            if steps.add(tok, q, index=j):
                break
        q_full = None
        if steps.probs:
            q_full = torch.zeros(len(steps.probs), self.vocab_size, device=ctx.ids.device)
            q_full[:, cand_ids] = torch.stack(steps.probs).float()  # zero outside the candidates: never drawn there
        reused = max(key.shape[-2] for key, _ in kv.values())  # distinct positions: the sliding span is inside
        return steps.proposal(q_full, reused)

    def __repr__(self) -> str:
        return self.name
