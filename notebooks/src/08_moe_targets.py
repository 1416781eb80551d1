# %% [markdown]
# # 08 · Why does an MoE target gain less?
#
# **Question.** People running Gemma 4's MTP drafters report about 2× on the dense 31B and "no speed-up" on the
# 26B-A4B mixture-of-experts model (llama.cpp PR 23398); another report: dense 27B 36.4 → 70.1 tok/s, MoE
# 35B-A3B 130.9 → 161.2 tok/s at similar acceptance (ik_llama.cpp issue 1970). Why would the same trick pay less
# on an MoE?
#
# **The argument.** Speculative decoding works because a verify forward over k+1 tokens reads the *same* weights
# as a one-token forward (notebook 01). In an MoE layer each token picks its top *t* of *E* experts, and a verify
# over k+1 tokens must read **every expert any of them picked**. With uniform routing that is
#
# $$E\,\Bigl(1 - \bigl(1 - \tfrac{t}{E}\bigr)^{k+1}\Bigr)$$
#
# experts per layer instead of *t*: the verify reads more weights with every extra draft token, so it is no longer
# nearly free.
#
# **What we run.** A random MoE built from transformers' `Qwen3MoeConfig` with the real routing of Qwen3-30B-A3B
# (128 experts, top 8) at a small width, and a dense twin with the same active parameters per token. We count the
# experts one verify touches, the weight bytes it reads, time both models' forward against k, and put the measured
# verify cost into the speed-up theory.

# %% labkit-first-cell

# %%
from labkit.lab.moe import active_params, dense_twin, random_moe

moe = random_moe(seed=0)  # bf16, hidden 512, 4 layers, experts 192 wide
dense = dense_twin(moe, seed=0)  # one MLP as wide as 8 experts: the same active parameters
E, t = moe.config.num_experts, moe.config.num_experts_per_tok
print(f"MoE:   {E} experts, top-{t} routing, {sum(p.numel() for p in moe.parameters()) / 1e6:.1f}M parameters, "
      f"{active_params(moe) / 1e6:.2f}M active per token")
print(f"dense: {sum(p.numel() for p in dense.parameters()) / 1e6:.1f}M parameters, "
      f"{active_params(dense) / 1e6:.2f}M active per token")

# %% [markdown]
# ## Experts touched by one verify
#
# Prefill 100 random tokens, then run the k+1 tokens of a verify on top and read which experts each layer's router
# picked for those tokens. Averaged over layers and a few random contexts; next to it, the uniform-routing formula.

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

from labkit.lab.moe import experts_touched, figure_touched

KS = ci_scale([0, 1, 2, 3, 4, 6, 8, 12, 16], [0, 1, 2, 4, 8])
touched = experts_touched(moe, KS, context=100, trials=ci_scale(8, 3))
display(pd.DataFrame(touched).set_index("k").round(1))
figure_touched(touched, E)

# %% [markdown]
# A random router is not a trained one: its tokens share a common direction in the residual stream, so they pick
# overlapping experts and the measured curve sits below the uniform one. Trained MoEs are pushed towards balanced
# routing (an auxiliary load-balancing loss), so a real model lies between the two; both grow with *k*, and that
# is the point.
#
# ## Weight bytes read per verify
#
# A dense model reads all its weights once per forward whatever *k* is. The MoE reads everything outside the
# experts (attention, norms, routers, LM head) once, plus the experts touched. Below for the random MoE (measured
# routing and uniform routing), and at the real size of Qwen3-30B-A3B (30.5B parameters, 3.3B active; shapes
# only, built on PyTorch's meta device) with uniform routing.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab.moe import real_size_model, verify_bytes
from labkit.measure.timing import weight_bytes

real = real_size_model()
dense_mb = weight_bytes(dense) / 1e6
rows = []
for r in touched:
    rows.append({"k": r["k"], "dense MB": dense_mb, "MoE MB (measured routing)": verify_bytes(moe, r["experts"]) / 1e6,
                 "MoE MB (uniform)": verify_bytes(moe, r["uniform"]) / 1e6,
                 "Qwen3-30B-A3B GB (uniform)": verify_bytes(real, r["uniform"]) / 1e9})
bytes_table = pd.DataFrame(rows).set_index("k")
growth = bytes_table.iloc[-1] / bytes_table.iloc[0]
display(bytes_table.round(1))
print(f"bytes read at k={KS[-1]} over k=0: dense {growth['dense MB']:.2f}×, MoE {growth['MoE MB (measured routing)']:.2f}× "
      f"(measured routing), {growth['MoE MB (uniform)']:.2f}× (uniform); Qwen3-30B-A3B "
      f"{growth['Qwen3-30B-A3B GB (uniform)']:.2f}×")

# %% [markdown]
# ## Forward time against k, MoE and dense
#
# `labkit.measure.timing.time_forward` for both models: one forward over the k+1 verify tokens on top of a 100-token
# cache, every k+1 **interleaved** in a shuffled order per round (machine noise hits every k alike), several rounds;
# the median and the interquartile range (IQR) per k+1. The ratio T(k+1)/T(1) is the verify cost the theory needs.
# These toy forwards take a few milliseconds, so on a shared 2-core machine the IQR is a real fraction of the
# median: a ratio that *falls* as k grows (a 2-token verify dearer than a 3-token one) is noise or a kernel switch,
# not a cost. The theory therefore takes each curve clamped at 1 and made non-decreasing
# (`labkit.core.verify_cost.VerifyCost.from_measured`, what the machine reference does), in this one place; the table shows both,
# and each ratio's range when both medians move by half their IQR.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.core.verify_cost import VerifyCost
from labkit.measure.timing import time_forward

TIMED = ci_scale([1, 2, 3, 4, 6, 8], [1, 2, 4, 8])
REPEATS = ci_scale(9, 5)
# time_forward's rows are per number of tokens n = k + 1, and name k too: keyed here by the draft length k
timed = {name: {r["k"]: r for r in time_forward(m, [1] + [k + 1 for k in TIMED], context=100, repeats=REPEATS)}
         for name, m in {"MoE": moe, "dense": dense}.items()}


def ratio_range(name, k):
    """T(k+1)/T(1) when each median moves by half its interquartile range: the ratio's spread in this run."""
    a, b = timed[name][k], timed[name][0]
    return ((a["ms"] - a["iqr_ms"] / 2) / (b["ms"] + b["iqr_ms"] / 2),
            (a["ms"] + a["iqr_ms"] / 2) / max(1e-9, b["ms"] - b["iqr_ms"] / 2))


raw = {name: {k: timed[name][k]["ms"] / timed[name][0]["ms"] for k in TIMED} for name in timed}
band = {name: {k: ratio_range(name, k) for k in TIMED} for name in timed}
cost = {name: VerifyCost.from_measured(raw[name], source="time_forward medians") for name in raw}  # the theory's
table = {}
for name in timed:
    table[f"{name} ms"] = {k: timed[name][k]["ms"] for k in [0, *TIMED]}
    table[f"{name} IQR ms"] = {k: timed[name][k]["iqr_ms"] for k in [0, *TIMED]}
    table[f"{name} T(k+1)/T(1) measured"] = {0: 1.0, **raw[name]}
    table[f"{name} range"] = {0: "", **{k: f"{lo:.2f}-{hi:.2f}" for k, (lo, hi) in band[name].items()}}
    table[f"{name} T(k+1)/T(1) used"] = {0: 1.0, **cost[name].ratios}
display(pd.DataFrame(table).rename_axis("k").round(2))
print(f"{REPEATS} interleaved rounds per model.")
for name in timed:
    moved = [k for k in TIMED if abs(cost[name].at(k) - raw[name][k]) > 0.01]
    if moved:
        print(f"{name}: the non-decreasing curve replaces the measured ratio at k = "
              + ", ".join(f"{k} ({raw[name][k]:.2f}x -> {cost[name].at(k):.2f}x)" for k in moved))
    else:
        print(f"{name}: the measured ratios are already at least 1 and non-decreasing")

# %% [markdown]
# ## What the theory then predicts
#
# With acceptance α per draft token and a drafter costing *c* target forwards per draft token, a round yields
# (1 − α^(k+1))/(1 − α) tokens and costs T(k+1)/T(1)·(1 + k·c) one-token forwards
# (`labkit.measure.theory.expected_speedup` with the non-decreasing verify cost above). We assume the same drafter quality for
# both targets, α = 0.7 and c = 0.05 (acceptance near what the reports above saw), so that only the verify cost
# differs. Next to each best speed-up, its range when the verify cost moves within its spread: a difference
# between the two models smaller than that is not a measured difference. A third curve: Qwen3-30B-A3B at full size
# if its forward time followed the bytes it reads (memory-bound, as on a GPU at batch 1; computed, not timed).

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab.moe import expected_unique_experts, figure_cost_and_speedup
from labkit.measure.theory import best_k, expected_speedup

ALPHA, C = 0.7, 0.05
# Qwen3-30B-A3B where a forward is memory-bound (a GPU at batch 1): time follows the bytes read, uniform routing
cost["Qwen3-30B-A3B, memory-bound"] = VerifyCost({
    k: verify_bytes(real, expected_unique_experts(E, t, k + 1)) / verify_bytes(real, t) for k in TIMED},
    source="computed: bytes read")
predicted = {name: {k: expected_speedup(ALPHA, k, C, verify_cost=cost[name].at(k)) for k in TIMED} for name in cost}
best = {name: best_k(ALPHA, C, verify_cost=cost[name]) for name in cost}


def speedup_range(name):
    """The best speed-up when the verify cost used at that k moves as far as its measured ratio's range allows."""
    k, s = best[name]
    if k == 0 or name not in band:
        return s, s
    lo, hi = (cost[name].at(k) * end / raw[name][k] for end in band[name][k])
    return (expected_speedup(ALPHA, k, C, verify_cost=max(1.0, hi)),
            expected_speedup(ALPHA, k, C, verify_cost=max(1.0, lo)))


ranges = {name: speedup_range(name) for name in best}
for name, (k, s) in best.items():
    lo, hi = ranges[name]
    spread_text = f" (range {lo:.2f}-{hi:.2f}× over the verify cost's spread)" if name in band and k else ""
    print(f"{name}: best k = {k}, predicted speedup {s:.2f}×{spread_text}; verify cost at that k "
          f"{cost[name].at(k):.2f}× a one-token forward")
figure_cost_and_speedup(cost, predicted)

# %% [markdown]
# ## What this run shows
#
# The sentences below are chosen from the numbers measured above (a busy machine can blur the timing, never the
# byte counts); a timing difference counts only when it exceeds the spread.

# %%
# NBVAL_IGNORE_OUTPUT
K = TIMED[-1]
at_k = bytes_table.loc[K] / bytes_table.loc[0]
print(f"Bytes: one verify over {K + 1} tokens reads {at_k['MoE MB (measured routing)']:.2f}× the weight bytes of a "
      f"one-token forward in the MoE (uniform routing: {at_k['MoE MB (uniform)']:.2f}×; Qwen3-30B-A3B: "
      f"{at_k['Qwen3-30B-A3B GB (uniform)']:.2f}×), {at_k['dense MB']:.2f}× in the dense model.")
(moe_lo, moe_hi), (dense_lo, dense_hi) = band["MoE"][K], band["dense"][K]
time_shows_it = moe_lo > dense_hi  # the MoE's verify dearer, beyond both spreads
time_contradicts = dense_lo > moe_hi
timing = (f"the MoE's verify over {K + 1} tokens costs {raw['MoE'][K]:.2f}× its one-token forward "
          f"({moe_lo:.2f}-{moe_hi:.2f}), the dense model's {raw['dense'][K]:.2f}× ({dense_lo:.2f}-{dense_hi:.2f})")
if time_shows_it:
    print(f"Time: on this machine {timing}: the MoE's verify cost grows faster with k, beyond the spread.")
elif time_contradicts:
    print(f"Time: on this machine the measurement points the other way: {timing}, the dense model's dearer beyond "
          "the spread (the claim below rests on bytes read only).")
else:
    print(f"Time: on this machine the measurement does not tell them apart: {timing}, ranges that overlap (the "
          "claim below rests on bytes read only).")
(kd, sd), (km, sm), (kr, sr) = best["dense"], best["MoE"], best["Qwen3-30B-A3B, memory-bound"]
(sd_lo, sd_hi), (sm_lo, sm_hi) = ranges["dense"], ranges["MoE"]
within_spread = sm_hi >= sd_lo and sd_hi >= sm_lo  # the two best speed-ups' ranges overlap
if within_spread:
    print(f"Theory with these (non-decreasing) costs: the dense model's best is k = {kd}, {sd:.2f}× "
          f"({sd_lo:.2f}-{sd_hi:.2f}), the MoE's k = {km}, {sm:.2f}× ({sm_lo:.2f}-{sm_hi:.2f}): the difference is "
          f"within the timing spread, so on these toy models this run does not show the MoE gaining less.")
else:
    verdict = "less than" if sm < sd else "more than"
    print(f"Theory with these (non-decreasing) costs: the dense model's best is k = {kd}, {sd:.2f}× "
          f"({sd_lo:.2f}-{sd_hi:.2f}), the MoE's k = {km}, {sm:.2f}× ({sm_lo:.2f}-{sm_hi:.2f}): the MoE gains "
          f"{verdict} the dense model, beyond the timing spread.")
print(f"Qwen3-30B-A3B, memory-bound (from bytes, not timed): {sr:.2f}× (k={kr}).")

# %% [markdown]
# ## Reading it
#
# * An MoE is cheap per token because each token reads only its own experts; that is exactly what a verify over
#   several tokens loses. The more tokens, the closer the verify comes to reading every expert.
# * At Qwen3-30B-A3B's size the expert weights are most of what a forward reads; where a forward is memory-bound
#   (a GPU at batch 1) time follows those bytes, and the theory's third curve shows what is left of the gain. The
#   ik_llama.cpp report fits: the MoE started fast (130.9 tok/s) and gained 1.23×, the dense model 1.93×.
# * The timing depends on the machine and on how busy it is; the byte count does not. A forward of these toy
#   models takes milliseconds, and its ratios move by tenths from run to run: a single measured ratio (a 2-token
#   verify at 1.40×, a 3-token one at 1.04×) is not a cost curve, and a "best k" read off it is noise. That is why
#   the theory uses the non-decreasing curve, why a difference between the models is claimed only beyond the
#   spread, and why the check below rests on bytes and tests the timing only when this run measured it.
#
# ## Check

# %%
assert all(a["experts"] <= b["experts"] for a, b in zip(touched, touched[1:])), "more tokens, more experts"
assert touched[0]["experts"] == t and touched[-1]["experts"] > 2 * t, "k=0 touches top-k; a long verify far more"
assert growth["dense MB"] == 1.0 and growth["MoE MB (measured routing)"] > 1.3, "MoE bytes grow with k, dense not"
assert growth["Qwen3-30B-A3B GB (uniform)"] > 3, "at real size a verify over many tokens reads several times more"
for name in ("MoE", "dense"):  # the curves the theory used: at least 1 and non-decreasing in k
    assert all(1.0 <= cost[name].at(a) <= cost[name].at(b) for a, b in zip(TIMED, TIMED[1:])), name
if time_shows_it:  # the prose above claims the timing only when it was measured beyond the spread
    assert band["MoE"][K][0] > band["dense"][K][1]
if within_spread:  # "within the timing spread": the two best speed-ups' ranges overlap
    assert ranges["MoE"][1] >= ranges["dense"][0] and ranges["dense"][1] >= ranges["MoE"][0]
else:  # "less / more than the dense model, beyond the spread"
    assert (ranges["MoE"][1] < ranges["dense"][0]) == (best["MoE"][1] < best["dense"][1])
print("✓ the MoE's verify reads more weights with every draft token; the dense model's does not")
