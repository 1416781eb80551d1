# %% [markdown]
# # 10 · When does spare compute run out?
#
# **Question.** Speculative decoding pays because a verify over k+1 tokens costs about one forward (notebook 01).
# Servers decode many sequences at once, and users report that speculation then stops paying: a 1B draft with a
# 70B target became *slower* than plain decoding at batch 32 (vLLM issue 17984); throughput dropped with
# speculation on (SGLang issue 4759). Why does the batch eat the gain, and from which batch size on?
#
# **The argument.** A forward reads every weight once and does 2 FLOPs per weight per token. At batch *B* a verify
# scores N = B·(k+1) tokens with the same weight reads. The machine can do (matmul rate ÷ memory rate) FLOPs per
# byte it reads — its *balance*. While N stays below the balance the arithmetic hides behind the memory reads and
# the verify is nearly free; above it the forward is compute bound, and a verify over k+1 tokens per sequence costs
# about k+1 plain steps. A big batch has already spent the spare compute, so speculation finds none left.
#
# **What is measured, what is predicted.** labkit's engine decodes one sequence (B = 1). Measured here: the
# forward time of the embedded target for B = 1 … 32 sequences × (k+1) tokens, and the machine's copy and matmul
# rates. Predicted: the speed-up at each B, from the speed-up theory with that measured verify cost — a batched
# engine (rows accepting different numbers of drafts) is not run.

# %% labkit-first-cell

# %%
import torch

from labkit import load_target
from labkit.measure.timing import matmul_rate, weight_bytes

target = load_target("gemma3-270m", device=DEVICE)  # bf16
W = weight_bytes(target.model)
FLOPS_PER_TOKEN = 2 * W / target.dtype.itemsize  # 2 FLOPs per weight read
print(f"{target.name}: {W / 1e6:.0f} MB of weights read per forward, {FLOPS_PER_TOKEN / 1e9:.2f} GFLOP per token")

# %% [markdown]
# ## The machine's balance
#
# Memory: the copy rate of the machine's one reference (`labkit.measure.machine.reference`, the same numbers
# notebooks 00, 01 and 06 and `labkit doctor` quote: a 256 MB tensor copied, the median of several copies and
# their spread; measured once per session and cached, and it says where it came from). Arithmetic: the rate of a
# 1024 × 1024 bf16 matmul, as in notebook 01.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab.batch import compute_bound_from
from labkit.measure.machine import reference

ref = reference(target)
bandwidth = ref.copy_gb_s * 1e9  # bytes/s
flops = matmul_rate(DEVICE, torch.bfloat16)
corner = compute_bound_from(W, FLOPS_PER_TOKEN, bandwidth, flops)
print(f"memory copy rate {ref.copy_gb_s:.1f} GB/s (±{ref.copy_spread_gb_s / 2:.1f}, the machine reference: "
      f"{ref.source}, measured {ref.when}), bf16 matmul rate {flops / 1e9:.0f} GFLOP/s: "
      f"balance {flops / bandwidth:.1f} FLOP per byte")
print(f"roofline: reading the weights takes {1e3 * W / bandwidth:.1f} ms, one token's arithmetic "
      f"{1e3 * FLOPS_PER_TOKEN / flops:.2f} ms -> compute bound from about N = {corner:.0f} tokens per forward")

# %% [markdown]
# ## Verify forward at batch B
#
# For each batch size, B sequences of 32 cached tokens each; then one forward over 1 token per sequence (a plain
# decoding step at batch B) and over k+1 tokens per sequence (a verify at batch B), with logits at every position
# as a verify needs. Median of a few runs.

# %%
from labkit.lab.batch import time_batched_forward

BATCHES = ci_scale([1, 2, 4, 8, 16, 32], [1, 4, 32])
TOKENS = ci_scale([1, 3, 5], [1, 5])  # k = 0 (plain), 2 and 4
rows = time_batched_forward(target, BATCHES, TOKENS, context=32, repeats=ci_scale(3, 2))

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

from labkit.lab.batch import figure_batch, roofline_ms, verify_cost_by_batch

table = pd.DataFrame(rows).pivot(index="batch", columns="tokens", values="ms")
table.columns = [f"ms, {n} tok/seq" for n in table.columns]
cost = verify_cost_by_batch(rows)
for k in cost[BATCHES[0]].ks:
    table[f"T(B,{k + 1})/T(B,1)"] = [cost[B].raw[k] for B in table.index]
    table[f"roofline T(B,{k + 1})/T(B,1)"] = [
        roofline_ms(B * (k + 1), W, FLOPS_PER_TOKEN, bandwidth, flops)
        / roofline_ms(B, W, FLOPS_PER_TOKEN, bandwidth, flops) for B in table.index]
display(table.round(2))
figure_batch(rows, W, FLOPS_PER_TOKEN, bandwidth, flops)

# %% [markdown]
# Read the ratio columns: the verify's cost in plain decoding steps *of the same batch*, measured and as the
# roofline predicts it from the machine's two rates. Near 1 the verify rides on memory reads the plain step pays
# anyway; near k+1 it is compute bound and costs as much as the k+1 plain steps it wants to replace.

# %% [markdown]
# ## What the theory predicts at each batch size
#
# `labkit.measure.theory.expected_speedup(α, k, c, verify_cost)`: a round yields (1 − α^(k+1))/(1 − α) tokens per sequence
# and costs k·c + T(B,k+1)/T(B,1) plain steps of batch B. Assumed drafter: α = 0.7 per draft token, c = 0.05 per
# draft step (an MTP head; its own cost is taken to scale with the batch like the target's), the best measured k.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.measure.theory import best_k

ALPHA, C = 0.7, 0.05
predicted = {B: best_k(ALPHA, C, verify_cost=cost[B]) for B in BATCHES}
display(pd.DataFrame([{"batch": B, "tokens in the verify": B * (k + 1), "best k": k, "predicted speedup": s}
                      for B, (k, s) in predicted.items()]).set_index("batch").round(2))
(k1, s1), (k32, s32) = predicted[BATCHES[0]], predicted[BATCHES[-1]]
if s32 < s1:
    print(f"Predicted: speculation gains {s1:.2f}× at B = {BATCHES[0]} and {s32:.2f}× at B = {BATCHES[-1]} on this "
          "machine: the batch has used up the spare compute the verify needs.")
else:
    print(f"Predicted: {s1:.2f}× at B = {BATCHES[0]} and {s32:.2f}× at B = {BATCHES[-1]}: on this run the batch did "
          "not reduce the gain.")
if s32 <= 1.0:
    print(f"At B = {BATCHES[-1]} the prediction is no gain at all: plain decoding (k = 0) is as fast or faster.")

# %% [markdown]
# ## Reading it
#
# * The roofline corner says where arithmetic catches up with memory *in principle*. Where the measured ratio
#   sits above the roofline's, the forward pays what the roofline leaves out: fixed overhead per forward,
#   attention over the cache, logits of the 262k-wide LM head at every position. On a GPU the balance is far
#   higher (hundreds of FLOPs per byte), so the corner moves to large batches — which is where servers run.
# * What is measured is one forward at each (B, k). What is predicted is the speed-up of a batched speculative
#   engine built on those forwards; labkit's engine runs B = 1, where notebooks 00 and 06 measure the real thing.
# * A real batched engine loses more: rows accept different numbers of drafts, so they fall out of step (padding
#   or ragged batches), and the drafter's own cost grows with the batch too.
#
# ## Check

# %%
assert all(r["ms"] > 0 for r in rows)
assert cost[BATCHES[-1]].raw[max(TOKENS) - 1] > cost[BATCHES[0]].raw[max(TOKENS) - 1], \
    "the verify costs more plain steps at a big batch than at batch 1"
assert s32 < s1, f"predicted speedup at B = {BATCHES[-1]} ({s32:.2f}) is below that at B = 1 ({s1:.2f})"
print("✓ the verify's relative cost grows with the batch, and the predicted gain shrinks")
