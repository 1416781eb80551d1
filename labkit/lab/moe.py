"""Why an MoE target gains less from speculative decoding (notebook 08): experts touched and bytes read per verify.

A mixture-of-experts layer routes each token to its top-t of E experts. One decoding step reads t experts'
weights per layer; a verify over k+1 tokens reads the union of their experts: with uniform routing,
E * (1 - (1 - t/E)^(k+1)) of them. A dense model reads the same weights whatever k is, so its verify stays nearly
free while the MoE's verify reads more weights with every extra draft token.

The MoE here is a random Qwen3-MoE built from transformers' ``Qwen3MoeConfig``: its default expert count and
top-k are those of Qwen3-30B-A3B (128 experts, top 8); only the widths are small so it runs on a CPU. Its dense
twin has the same attention, embeddings and layer count and one MLP as wide as the t active experts together:
the same active parameters per token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from labkit.core.verify_cost import VerifyCost, as_verify_cost


def moe_config(hidden: int = 512, layers: int = 4, expert_width: int = 192, vocab: int = 8192) -> Any:
    """A small-width Qwen3-MoE config with the real expert count and top-k (the config's defaults)."""
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=8,
                          num_key_value_heads=2, head_dim=hidden // 8, moe_intermediate_size=expert_width,
                          max_position_embeddings=1024, mlp_only_layers=[], decoder_sparse_step=1)


def random_moe(seed: int = 0, dtype: torch.dtype = torch.bfloat16, **sizes: Any) -> Any:
    """A random Qwen3-MoE causal LM (no download); ``sizes`` go to ``moe_config``."""
    from transformers import Qwen3MoeForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3MoeForCausalLM(moe_config(**sizes))
    return model.to(dtype).eval()


def dense_twin(moe: Any, seed: int = 0) -> Any:
    """A random dense Qwen3 with the MoE's active parameters: one MLP as wide as its top-k experts together."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    c = moe.config
    cfg = Qwen3Config(vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
                      num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
                      head_dim=c.head_dim, intermediate_size=c.num_experts_per_tok * c.moe_intermediate_size,
                      max_position_embeddings=c.max_position_embeddings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(cfg)
    return model.to(next(moe.parameters()).dtype).eval()


def expected_unique_experts(experts: int, top_k: int, tokens: int) -> float:
    """E * (1 - (1 - t/E)^n): experts one layer touches for n tokens when each picks t of E uniformly."""
    return experts * (1 - (1 - top_k / experts) ** tokens)


def _routers(model: Any) -> list[Any]:
    return [layer.mlp.gate for layer in model.model.layers if hasattr(layer.mlp, "gate")]


@torch.inference_mode()
def experts_touched(model: Any, ks: list[int], context: int = 100, trials: int = 8, seed: int = 0
                    ) -> list[dict[str, float]]:
    """Mean unique experts per MoE layer that one verify forward over k+1 tokens touches, for each k.

    Each trial prefills ``context`` random tokens, then runs the k+1 verify tokens on top and reads which experts
    the routers picked for those tokens only (the prefill's routing is not counted).
    """
    from labkit.core.kvcache import crop, new_cache

    routers = _routers(model)
    if not routers:
        raise ValueError("model: has no MoE layers (expected a Qwen3-MoE style model with mlp.gate routers)")
    picked: list[torch.Tensor] = []
    hooks = [r.register_forward_hook(lambda m, a, out: picked.append(out[2])) for r in routers]
    g = torch.Generator().manual_seed(seed)
    n_max = max(ks) + 1
    sums = {k: 0.0 for k in ks}
    try:
        for _ in range(trials):
            ids = torch.randint(10, model.config.vocab_size, (1, context + n_max), generator=g)
            cache = new_cache(model)
            model(input_ids=ids[:, :context], cache=cache, use_cache=True, logits_to_keep=1)
            for k in ks:
                picked.clear()
                model(input_ids=ids[:, context: context + k + 1], cache=cache, use_cache=True)
                sums[k] += sum(p.unique().numel() for p in picked) / len(picked)
                crop(cache, context)
    finally:
        for h in hooks:
            h.remove()
    c = model.config
    return [{"k": k, "tokens": k + 1, "experts": sums[k] / trials,
             "uniform": expected_unique_experts(c.num_experts, c.num_experts_per_tok, k + 1)} for k in ks]


def _param_split(model: Any) -> tuple[int, int]:
    """(parameters one forward reads outside the experts, parameters of all experts). Works on a model built on
    the meta device (real sizes, no memory): counts by name, a tied embedding / LM head once, an untied input
    embedding not at all (it is only looked up)."""
    tied = model.get_input_embeddings().weight is model.get_output_embeddings().weight
    other = experts = 0
    for name, p in model.named_parameters():  # yields a tied parameter once
        if ".mlp.experts." in name:
            experts += p.numel()
        elif tied or "embed_tokens" not in name:
            other += p.numel()
    return other, experts


def verify_bytes(model: Any, experts_per_layer: float, bytes_per_weight: float = 2.0) -> float:
    """Weight bytes a forward reads when each MoE layer touches ``experts_per_layer`` experts: everything outside
    the experts (attention, norms, routers, LM head) once, plus the touched experts (bf16 by default)."""
    other, experts = _param_split(model)
    n_moe = len(_routers(model))
    per_expert = experts / max(1, n_moe * model.config.num_experts)
    return bytes_per_weight * (other + n_moe * experts_per_layer * per_expert)


def real_size_model() -> Any:
    """Qwen3-30B-A3B at its real size on the meta device (shapes only, no memory): transformers' Qwen3MoeConfig
    defaults are that model's except its 48 layers and head_dim 128 (its published config.json)."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    with torch.device("meta"):
        return Qwen3MoeForCausalLM(Qwen3MoeConfig(num_hidden_layers=48, head_dim=128, norm_topk_prob=True))


def active_params(model: Any) -> int:
    """Parameters one token uses: all of them for a dense model; top-k experts per layer for an MoE."""
    other, experts = _param_split(model)
    routers = _routers(model)
    if not routers:
        return other
    return other + experts * model.config.num_experts_per_tok // model.config.num_experts


def figure_touched(rows: list[dict[str, Any]], experts: int) -> Any:
    """Unique experts per layer against k: measured on the random MoE, and the uniform-routing expectation."""
    import plotly.graph_objects as go

    ks = [r["k"] for r in rows]
    fig = go.Figure()
    fig.add_scatter(x=ks, y=[r["experts"] for r in rows], mode="lines+markers", name="measured (random MoE)")
    fig.add_scatter(x=ks, y=[r["uniform"] for r in rows], mode="lines", line=dict(dash="dash"),
                    name="uniform routing: E·(1 − (1 − t/E)^(k+1))")
    fig.add_scatter(x=[min(ks), max(ks)], y=[experts, experts], mode="lines", line=dict(dash="dot", color="#888"),
                    name=f"all {experts} experts")
    fig.update_layout(template="plotly_white", height=340, title="Experts one verify touches per layer",
                      xaxis_title="draft tokens k (the verify scores k+1 tokens)", yaxis_title="unique experts",
                      legend=dict(orientation="h", y=-0.25))
    return fig


def figure_cost_and_speedup(curves: Mapping[str, VerifyCost | Mapping[int, float]],
                            speedups: dict[str, dict[int, float]]) -> Any:
    """Left: measured verify cost T(k+1)/T(1) per model (as the lab uses it); right: the speedup the theory
    predicts from it."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("verify cost T(k+1) / T(1) (measured)",
                                                        "predicted speedup (theory × measured cost)"))
    for i, (name, given) in enumerate(curves.items()):
        color, curve = ["#d6453d", "#2f7fd8", "#2e9d4e"][i % 3], as_verify_cost(given)
        fig.add_scatter(x=curve.ks, y=[curve.ratios[k] for k in curve.ks], mode="lines+markers", name=name,
                        legendgroup=name, line=dict(color=color), row=1, col=1)
        s = speedups[name]
        fig.add_scatter(x=sorted(s), y=[s[k] for k in sorted(s)], mode="lines+markers", name=name,
                        legendgroup=name, showlegend=False, line=dict(color=color), row=1, col=2)
    fig.update_xaxes(title_text="draft tokens k")
    fig.update_layout(template="plotly_white", height=360, legend=dict(orientation="h", y=-0.25))
    return fig
