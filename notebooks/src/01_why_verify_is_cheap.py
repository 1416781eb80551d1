# %% [markdown]
# # 01 · Why is verifying k tokens about as cheap as generating one?
#
# **Question.** Speculative decoding only pays off if the target can score *k* drafted tokens in one forward
# pass for about the price of scoring one. Is that true on this machine, and why?
#
# **The argument.** To produce one token, a forward pass must read every weight of the model from memory once,
# and does only about 2 floating-point operations per weight it reads (one multiply, one add). Memory delivers
# bytes far more slowly than the processor can do arithmetic on them, so a one-token forward waits on memory.
# Scoring *k* tokens reads the **same** weights once and does *k* times the arithmetic on them — the extra
# arithmetic is almost free until it catches up with memory. That is the whole trick: the verify step
# turns idle arithmetic units into tokens.
#
# We measure three things here: how fast this machine moves memory, how fast it multiplies matrices, and how long
# one target forward over *k* new tokens takes for *k* = 1 … 16.

# %% labkit-first-cell

# %%
from labkit import load_target
from labkit.measure.timing import copy_bandwidth, matmul_rate, time_forward, weight_bytes

target = load_target("gemma3-270m", device=DEVICE)  # bf16
n_params = sum(p.numel() for p in target.model.parameters())
W = weight_bytes(target.model)
print(f"{target.name}: {n_params / 1e6:.0f}M parameters, {W / 1e6:.0f} MB of bf16 weights on {target.device.type}")

# %% [markdown]
# ## The machine: memory rate and arithmetic rate
#
# *Memory*: copy a 256 MB tensor and count bytes read + written per second. *Arithmetic*: time a 1024 × 1024 bf16
# matrix multiply (2·n³ operations). Their ratio is how many operations the machine can do per byte it reads —
# compare it with the ~1 operation per byte (2 per bf16 weight) of a one-token forward.

# %%
# NBVAL_IGNORE_OUTPUT
import torch

bandwidth = copy_bandwidth(DEVICE)
flops = matmul_rate(DEVICE, torch.bfloat16)
floor_ms = 1e3 * W / bandwidth
print(f"memory copy rate:   {bandwidth / 1e9:6.1f} GB/s  -> reading all weights once takes at least {floor_ms:.1f} ms")
print(f"bf16 matmul rate:   {flops / 1e9:6.1f} GFLOP/s")
print(f"machine balance:    {flops / bandwidth:6.1f} FLOP per byte; a one-token forward does about "
      f"{2 * n_params / W:.1f} FLOP per weight byte")

# %% [markdown]
# ## One target forward over k new tokens
#
# The forward runs on top of a cache of 100 prompt tokens (a realistic verify step) and returns logits at all
# *k* positions, exactly what the verify step needs. Each *k* is timed several times; the median counts.

# %%
ks = ci_scale(list(range(1, 17)), [1, 2, 4, 8, 16])
rows = time_forward(target, ks, context=100, repeats=ci_scale(7, 3))

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

table = pd.DataFrame(rows)
table["× cost of k=1"] = table["ms"] / table["ms"].iloc[0]
table["ms per token"] = table["ms"] / table["k"]
table.round(2)

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab import figures

figures.verify_cost(rows, weight_bytes=W, bandwidth=bandwidth, flops_per_token=2 * n_params, flops=flops,
                    title=f"One target forward over k new tokens ({target.device.type}, bf16)")

# %% [markdown]
# ## Reading the plot
#
# * The **dashed red line** is the memory floor: the time to stream every weight once at the measured copy rate.
#   No forward can be faster than that, whatever *k* is.
# * The **dotted black line** is pure arithmetic: *k* tokens × 2 operations per weight at the measured matmul rate.
# * The **dotted grey line** is what plain decoding pays for the same *k* tokens: *k* one-token forwards.
#   (The axis is logarithmic: each gridline is a factor.)
# * The measured curve sits above both and grows **slowly**: checking 8 drafted tokens costs a small multiple of
#   generating one, while producing up to 9 tokens. On a CPU the gap above the memory floor at small *k* is
#   fixed overhead (Python, kernel launches, attention, the 262k-wide LM head's softmax-free matmul); it is paid
#   once per forward too, which helps speculative decoding in the same way.
# * Per token (the table's last column) the cost falls steeply with *k*. That is the budget a drafter spends.
#
# In fp32 on some CPUs the one-token forward uses a faster matrix-vector path, so k=2 can cost nearly twice
# k=1 there — another reason labkit defaults to bf16 on CPU. On a GPU the curve is even flatter: one forward of a
# 270M model is almost all launch overhead and memory traffic.

# %%
# NBVAL_IGNORE_OUTPUT
by_k = {r["k"]: r["ms"] for r in rows}
print(f"k=1: {by_k[1]:.1f} ms   k=8: {by_k[8]:.1f} ms   ratio {by_k[8] / by_k[1]:.2f}   "
      f"(8 tokens would cost {8 * by_k[1]:.0f} ms one at a time)")
if DEVICE == "cuda":
    print("Measured on the GPU: compare with the CPU numbers in the committed copy of this notebook.")

# %% [markdown]
# ## Check
#
# Verifying 8 tokens at once must be much cheaper than 8 one-token forwards (it costs well under 3× one
# forward), and no forward can beat the memory floor by much (the weights do not fit in any CPU cache).

# %%
assert by_k[8] < 3 * by_k[1], f"k=8 costs {by_k[8] / by_k[1]:.2f}× k=1"
assert by_k[16] < 16 * by_k[1] / 3, "per-token cost must fall with k"
assert by_k[1] > 0.3 * floor_ms, "a forward cannot read the weights much faster than memory delivers them"
print("✓ one forward over 8 tokens costs far less than 8 forwards over 1")
