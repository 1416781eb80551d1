# %% [markdown]
# # 06 · How many tokens should the drafter propose?
#
# **Question.** A longer draft can earn more tokens per target forward, but every extra drafted token costs
# drafting time and is less likely to survive. Which draft length *k* is fastest on this machine, and does the
# simple theory predict it?
#
# **Theory** (Leviathan et al. 2022). If each drafted token is accepted with probability α independently, a round
# yields (1 − α^(k+1)) / (1 − α) tokens (the bonus included). If one draft step costs *c* target forwards, the
# round costs k·c + 1 forwards, so the speedup over plain decoding is
#
# $$\text{speedup}(k) = \frac{1-\alpha^{k+1}}{(1-\alpha)(k c + 1)}$$
#
# It rises while the next draft is worth more than it costs, then falls: there is a best *k*, and it needs α > c to
# be worth speculating at all. Below we measure speedup for each *k*, estimate α and *c* from the same runs, and
# overlay the curve.

# %% labkit-first-cell

# %%
from labkit import load_target
from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.measure.prompts import prompt_set

target = load_target("gemma3-270m", device=DEVICE)
drafter = MTPDrafter.pretrained("gemma3-270m")
ps = prompt_set()
prompts = ci_scale([ps["conversation"][1], ps["qa"][2]], [ps["conversation"][1]])
KS = ci_scale(list(range(0, 13)), [0, 1, 2, 4, 8])
N = 32

# %% [markdown]
# ## The live sweep
#
# The sweep runs in a background thread, so the notebook stays responsive: the plot grows a point per *k*, the
# theory curve is redrawn from the α and *c* measured so far, and the stars mark the best *k* (measured and
# predicted). **Stop** ends it after the current round. *k* = 0 is plain decoding through the same loop — the
# baseline of every speedup. Greedy decoding, the same prompts for every *k*.

# %%
# NBVAL_IGNORE_OUTPUT
# (a background thread may print warnings into this cell)
from labkit.lab.widgets import SpeedSweep

sweep = SpeedSweep(target, drafter, KS, prompts, max_new_tokens=N, title="MTP drafter")
display(sweep)
sweep.run();  # returns at once; the next cell waits for it

# %% [markdown]
# While it runs you can scroll, read, or press Stop. The next cell waits for the sweep to finish (or be stopped)
# before reading the numbers.

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

sweep.wait()
alpha, c = sweep.estimates()
print(f"measured: alpha = {alpha:.2f} (acceptance per drafted token), c = {c:.3f} (draft step / target forward)")
pd.DataFrame(sweep.points).round(3)

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.measure.theory import best_k

k_theory, s_theory = best_k(alpha, c, k_max=max(KS))
k_measured = max(sweep.points, key=lambda p: p["speedup"])["k"]
print(f"theory: best k = {k_theory} ({s_theory:.2f}×);  measured: best k = {k_measured} "
      f"({max(p['speedup'] for p in sweep.points):.2f}×)")

# %% [markdown]
# ## Reading it
#
# * The theory assumes a verify forward over k + 1 tokens costs the same as over one. Notebook 01 measured that it
#   grows slowly (on a CPU, about 1.3× at k = 8): the measured points fall increasingly below the curve as k grows.
# * Acceptance is not independent of position either: real drafters are good at some stretches (boilerplate,
#   copied text) and bad at others, so long drafts fail together. The per-position acceptance (notebook 00's
#   dashboard) shows it.
# * The curve is flat near its top: *k* one or two away from the best costs little. Too long a draft is cheaper
#   to get wrong than too short, when *c* is small.
# * A CPU on a shared machine is noisy: rerun the sweep and look at the spread before trusting a difference of a
#   few percent.
#
# ## Stop works
#
# A second sweep, stopped right after it starts: the button (or `sweep.stop()`) sets a flag the run checks after
# every round, so it ends within one target forward.

# %%
import time

short = SpeedSweep(target, drafter, [0, 2, 4, 8], prompts[:1], max_new_tokens=N, title="stopped early")
short.run()
time.sleep(1.0)
short.stop()  # the same as clicking Stop
short.wait(timeout=60)
print("stopped early:", short.stopped and len(short.points) < 4)

# %% [markdown]
# ## Check

# %%
assert [p["k"] for p in sweep.points] == sorted(set(KS)), "the sweep measured every k"
tpv = {p["k"]: p["tokens_per_verify"] for p in sweep.points}
assert tpv[0] == 1.0 and tpv[max(KS)] > tpv[1] > 1.0, tpv
assert 0 < alpha < 1 and c > 0
assert short.stopped and not short.running and len(short.points) < 4, "Stop ended the second sweep early"
print("✓ every k measured; tokens per verify grow with k; Stop ends a sweep early")
