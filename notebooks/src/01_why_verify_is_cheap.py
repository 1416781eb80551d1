# %% [markdown]
# # 01 · Is verifying k tokens as cheap as generating one?
#
# **Question.** Speculative decoding only pays off if the target can score *k* drafted tokens in one forward
# pass for about the price of scoring one. Is that true on this machine, and why (or why not)?
#
# **The argument.** To produce one token, a forward pass must read every weight of the model from memory once,
# and does only about 2 floating-point operations per weight it reads (one multiply, one add). Memory delivers
# bytes far more slowly than the processor can do arithmetic on them, so a one-token forward waits on memory.
# Scoring *k* tokens reads the **same** weights once and does *k* times the arithmetic on them — the extra
# arithmetic is almost free until it catches up with memory. That is the whole trick: the verify step
# turns idle arithmetic units into tokens.
#
# We measure three things here: how fast this machine moves memory, how fast it multiplies matrices, and how long
# one target forward over *k* new tokens takes for *k* = 1 … 16. Whether the argument holds is a property of the
# machine: the answer printed below comes from this run.

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
# * How fast the measured curve climbs decides whether speculation can pay here. On a CPU the gap above the memory
#   floor at small *k* is fixed overhead (Python, attention, the 262k-wide LM head), paid once per forward too.
#   Per token (the table's last column) the cost falls with *k*: that is the budget a drafter spends.
#
# Machines of the same kind differ here — one with native bf16 arithmetic (`avx512_bf16`, `amx_bf16`) keeps the
# curve nearly flat, one without it pays for every extra token. The sentence below is chosen from this run's numbers.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab.explain import explain_verify_cost

by_k = {r["k"]: r["ms"] for r in rows}
print(explain_verify_cost(by_k, k=8))
if DEVICE == "cuda":
    print("Measured on the GPU: compare with the CPU numbers in the committed copy of this notebook.")

# %% [markdown]
# ## What this means for speculative decoding here: `labkit doctor`
#
# The same measurements, done for you: `labkit doctor` (or the function below) times the copy rate, the verify
# cost T(k+1)/T(1) in bf16 and fp32, which thread count is fastest right now, reads the CPU's features, and feeds
# the measured cost curve to the theory of notebook 06 to say which drafter acceptance and which *k* can beat plain
# decoding on this machine. Notebook 06 prints the same verdict from its own measurement.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.measure.doctor import diagnose, render

report = diagnose(target, ks=(1, 2, 4, 8), repeats=ci_scale(3, 2))
print(render(report))

# %% [markdown]
# ## Check
#
# What the text above claims, whatever the machine: checking 8 tokens in one forward costs less per token than 8
# one-token forwards, no forward beats the memory floor by much (the weights do not fit in any CPU cache), and the
# verdict's numbers are the ones measured here.

# %%
assert by_k[8] / 8 < by_k[1], f"8 tokens in one forward cost {by_k[8] / by_k[1]:.2f}x one token"
assert by_k[16] / 16 < by_k[8] / 8 * 1.5, "per-token cost keeps falling (or stays flat) up to k = 16"
assert by_k[1] > 0.3 * floor_ms, "a forward cannot read the weights much faster than memory delivers them"
assert set(report.verify_cost) == {"bf16", "fp32"} and report.verdict.verify_cost
assert report.verdict.break_even_alpha is None or 0 < report.verdict.break_even_alpha < 1
print("✓ one forward over 8 tokens costs less per token than 8 forwards over 1; the verdict comes from this run")
