# %% [markdown]
# # 07 · Train your own MTP head
#
# **Question.** Where does a good MTP drafter come from? Can a few minutes of CPU training teach a fresh head to
# predict the target's next tokens from its hidden state — and how close does it get to the head shipped with labkit?
#
# **Recipe: self-distillation.** The target writes its own training data: it continues a set of seed prompts, and
# for every position we keep the token, the target's final hidden state, the K/V of the two layers an MTP head
# reads, and the target's next-token distribution. The head is then trained to predict, from the state at
# position *m*, the target's distribution at *m*+1, *m*+2, *m*+3 — chaining its own predicted hidden states, as it
# does when drafting — with a cross-entropy loss plus a regression of its predicted hidden state onto the real
# one. Acceptance is measured on held-out greedy text: a draft counts as accepted exactly when it equals the
# target's next token.
#
# The full recipe is `labkit train-mtp` (how the shipped head was made: 305k self-generated positions, then 700
# steps; `labkit/data/MODEL_CARD.md` has the commands and what each variant gave). Here: the same pieces, a much
# smaller run, live.

# %% labkit-first-cell

# %%
# NBVAL_IGNORE_OUTPUT
import shutil

from labkit import load_target
from labkit.drafters.mtp.drafter import MTPDrafter
from labkit.training.train_mtp import TargetParts, evaluate

target = load_target("gemma3-270m", device=DEVICE)
shipped = MTPDrafter.pretrained("gemma3-270m")
RUN = "build/mtp-notebook-run"  # data + checkpoints of this run (deleted first: every run starts fresh)
shutil.rmtree(RUN, ignore_errors=True)
STEPS = ci_scale(100, 30)
DATA = dict(data_batches=1, batch_size=ci_scale(16, 8), new_tokens=ci_scale(48, 32), heldout_tokens=ci_scale(40, 32))
print(f"{STEPS} steps on {DATA['batch_size']} self-generated sequences of {DATA['new_tokens']} tokens")

# %% [markdown]
# ## Live training
#
# The loop runs in a background thread with a **Stop** button. First the target generates the data (the flat start
# of the run), then the curves grow: training loss (left axis) and held-out acceptance of the first drafted token
# (right axis), evaluated every few steps. Once training ends, a dashed line adds the shipped head on the same
# held-out text (next section).

# %%
# NBVAL_IGNORE_OUTPUT
# (a background thread may print warnings into this cell)
from labkit.lab.experiments import train_mtp_live
from labkit.lab.widgets import BackgroundRun, TrainingMonitor

monitor = TrainingMonitor("Training an MTP head for Gemma 3 270M (self-distillation)")
run = BackgroundRun([monitor], title="train-mtp")
display(run)
trained = {}


def work(me):
    run.status("the target is generating training data …")
    out = train_mtp_live(target, RUN, STEPS, on_step=monitor, check=me.check, eval_every=ci_scale(20, 10), **DATA)
    trained.update(out)
    run.status(f"trained {STEPS} steps")


run.start(work);

# %%
# NBVAL_IGNORE_OUTPUT
run.wait()
first = trained["evals"][0]["per_position_acceptance"][0]
last = trained["evals"][-1]["per_position_acceptance"][0]
print(f"held-out acceptance of the first draft: {first:.2f} at step 0 → {last:.2f} after {STEPS} steps")

# %% [markdown]
# ## Compared with the shipped head
#
# The same held-out text, the same evaluation (greedy acceptance per draft position, and the tokens per verify it
# implies at each *k*) for the head trained here and the shipped one.

# %%
# NBVAL_IGNORE_OUTPUT
import pandas as pd

heldout = trained["heldout"]
ev_trained = trained["evals"][-1]
ev_shipped = evaluate(shipped.head.float(), heldout, TargetParts(target, shipped.head.vocab_ids), k=6)
monitor.reference_line(ev_shipped["per_position_acceptance"][0])
pd.DataFrame({
    "trained here": ev_trained["per_position_acceptance"],
    "shipped": ev_shipped["per_position_acceptance"],
}, index=[f"position {i + 1}" for i in range(6)]).round(3)

# %% [markdown]
# And both as real drafters in the engine, on the same prompts:

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.measure.sweep import compare
from labkit.measure.prompts import prompt_set

ps = prompt_set()
rows = compare(target, {"plain": None, "trained here": trained["drafter"], "shipped": shipped},
               [ps["conversation"][4], ps["qa"][4]], k=4, max_new_tokens=ci_scale(40, 24))
pd.DataFrame([{k: v for k, v in r.items() if k != "results"} for r in rows]).set_index("drafter").round(3)

# %% [markdown]
# **Why the gap.** The shipped head saw far more data (2,368 sequences from 1,248 seed prompts at four
# temperatures, 305k positions) for 700 steps of 8 sequences; a few minutes on a CPU gets a fresh head from nothing
# to a useful first-draft acceptance. The full recipe runs in two resumable steps (about an hour of data and 35
# minutes of training on 2 cores):
#
# ```
# labkit train-mtp --out my-run --data-only --data-batches 37
# labkit train-mtp --out my-run --resume --data-batches 37 --steps 700 --train-batch 8 --distill-top 32
# ```
#
# and `MTPDrafter.load("my-run/mtp.safetensors")` loads the result.
#
# ## Check

# %%
losses = [h["loss"] for h in trained["history"]]
assert len(losses) == STEPS and not run.stopped
assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, "the loss went down"
assert last > first, f"held-out acceptance improved ({first:.2f} -> {last:.2f})"
assert ev_shipped["per_position_acceptance"][0] >= last - 0.05, "the shipped head is at least as good"
print("✓ loss fell, acceptance rose; the shipped head remains the reference")
