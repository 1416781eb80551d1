"""How far a target is from a reference (a quantized copy against its bf16 original): KL and greedy agreement,
teacher-forced on the same text. A pure tensor measurement: the bench (int8 rows) and notebook 09 use it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


@torch.inference_mode()
def divergence(reference: Any, others: Mapping[str, Any], prompts: Sequence[str | Sequence[int]]
               ) -> dict[str, dict[str, float]]:
    """KL(p_reference || p_other) in nats and argmax agreement for each of ``others`` (``labkit.models.load.Target``
    like ``reference``), over every prompt position.

    Teacher-forced: every model reads the same text, so each position compares next-token distributions on equal
    terms. Per model: the mean KL, its 90th percentile and the share of positions with the same argmax.
    """
    kls: dict[str, list[torch.Tensor]] = {name: [] for name in others}
    same: dict[str, list[torch.Tensor]] = {name: [] for name in others}
    for text in prompts:
        ids = reference.tokenizer(text)["input_ids"] if isinstance(text, str) else text
        ids = torch.as_tensor(ids)[None].to(reference.device)
        lp = torch.log_softmax(reference.model(input_ids=ids).logits[0].float(), -1)
        for name, other in others.items():
            lq = torch.log_softmax(other.model(input_ids=ids).logits[0].float(), -1)
            kls[name].append((lp.exp() * (lp - lq)).sum(-1))
            same[name].append(lp.argmax(-1) == lq.argmax(-1))
    out = {}
    for name in others:
        kl, agree = torch.cat(kls[name]), torch.cat(same[name]).float()
        out[name] = {"kl_mean": float(kl.mean()), "kl_p90": float(kl.quantile(0.9)),
                     "greedy_agreement": float(agree.mean()), "positions": int(kl.numel())}
    return out
