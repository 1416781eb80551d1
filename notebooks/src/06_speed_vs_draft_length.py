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
# be worth speculating at all. That formula assumes a verify forward over k + 1 tokens costs the same as one over 1
# token. Notebook 01 showed that this depends on the machine, so here the theory uses the verify cost **measured on
# this machine**, T(k+1)/T(1):
#
# $$\text{speedup}(k) = \frac{1-\alpha^{k+1}}{(1-\alpha)\,(1 + k c)\,T(k+1)/T(1)}$$
#
# with *c* measured as labkit measures it everywhere: one draft step in *verify* forwards of the same rounds
# (`labkit.core.metrics.draft_cost`), and α the i.i.d. estimate accepted / (accepted + rejections)
# (`labkit.core.metrics.alpha`; `docs/metrics.md` has every definition). Below we take the verify cost from this
# machine's reference, then measure the speedup for each *k*, estimate α and *c* from the same runs, and overlay the
# curve.

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
# ## The verify cost on this machine
#
# One target forward over k + 1 tokens against one over 1 token, on top of 100 cached tokens (what a verify does):
# this machine's reference (`labkit.measure.machine`, notebook 01 explains how it is measured), the same numbers
# notebooks 00, 01 and 04 quote in this session — the line below says whether it was measured now or read from the
# session's cache. It is non-decreasing in *k* by construction (a raw median below 1 counts as 1), so the theory
# curve below is not a sawtooth of timing noise. Between measured *k* it is interpolated. The verdict is the one
# `labkit doctor` prints.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.core.verify_cost import VerifyCost
from labkit.measure.doctor import verdict
from labkit.measure.machine import reference

ref = reference(target)
verify_cost = VerifyCost(ref.verify_cost.upto(max(KS)), source=ref.verify_cost.source)  # at every k of the sweep
print(ref.text())
print(verdict(ref.verify_cost).text(with_curve=False))

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

sweep = SpeedSweep(target, drafter, KS, prompts, max_new_tokens=N, title="MTP drafter", verify_cost=verify_cost)
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
print(f"measured, pooled over every k: alpha = {alpha:.2f} (i.i.d. estimate: accepted / (accepted + rejections)), "
      f"c = {c:.3f} (one draft step in verify forwards)")
pd.DataFrame(sweep.points).round(3)

# %% [markdown]
# The same figure as a static picture (it stays readable in the saved notebook, without a kernel), and next to it
# what the sweep generated: the text itself, and how much of it repeats earlier text.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab import figures

figures.speed_vs_k(sweep.points, alpha=alpha, c=c, k_max=max(KS), verify_cost=verify_cost,
                   title="Speedup vs draft length k (theory with the measured verify cost)")

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.measure.text import repetition

tok = target.tokenizer
plain_runs = sweep.results[0]
shares = {f"prompt {i + 1}": repetition(tok(p, add_special_tokens=False)["input_ids"], r.token_ids)
          for i, (p, r) in enumerate(zip(prompts, plain_runs))}
for i, r in enumerate(plain_runs):
    print(f"--- prompt {i + 1}, greedy continuation ({N} tokens):\n{r.text}\n")
figures.repetition_bars(shares)

# %% [markdown]
# ## What this run says
#
# The sentences below are chosen from the numbers above — the best *k* measured, the best *k* the theory predicts
# from this run's α, *c* and verify cost, and, when speculation lost, which of those numbers made it lose.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab.explain import explain_best_k, explain_repetition, explain_speed, measurement_problem, outcome_now
from labkit.measure.theory import best_k

k_theory, s_theory = best_k(alpha, c, k_max=max(KS), verify_cost=verify_cost)
best = max(sweep.points, key=lambda p: p["speedup"])
best_draft = max((p for p in sweep.points if p["k"] > 0), key=lambda p: p["speedup"])
print(explain_best_k(best["k"], best["speedup"], k_theory, s_theory))
print(explain_speed(outcome_now(speedup=best_draft["speedup"], tokens_per_verify=best_draft["tokens_per_verify"],
                                k=best_draft["k"], verify_cost=verify_cost.at(best_draft["k"]), c=best_draft["draft_cost"],
                                alpha=best_draft["alpha"]), what=f"the MTP drafter at k = {best_draft['k']}"))
print(explain_repetition(sum(shares.values()) / len(shares), drafter="the MTP drafter"))
for p in sweep.points:
    if p["k"] > 0 and (problem := measurement_problem(p["speedup"], p["tokens_per_verify"])):
        print(f"k = {p['k']}: {problem}")

# %% [markdown]
# ## Reading it
#
# * The theory's verify cost is this machine's: where a forward over more tokens costs much more, the curve peaks
#   at a small *k* or never rises above 1. Notebook 01 and `labkit doctor` explain why machines differ.
# * Acceptance is not independent of position either: real drafters are good at some stretches (boilerplate,
#   copied text) and bad at others, so long drafts fail together. The per-position acceptance (notebook 00's
#   dashboard) shows it.
# * A CPU on a shared machine is noisy: rerun the sweep and look at the spread before trusting a difference of a
#   few percent. The sentences above say when the machine was busy while measuring.
#
# ## Fixed k or a policy?
#
# The sweep above chose one *k* for the whole run. But acceptance moves as the text goes: a drafter can sail through
# a stretch of boilerplate and then miss every token of a new idea. A **draft-length policy** chooses *k* round by
# round (`labkit.core.draft_length`; `SpeculativeDecoder(target, drafter, k=policy)`):
#
# * **cost model** (`k="auto"`): keeps a running acceptance rate per draft position and picks the *k* with the most
#   expected tokens per unit of time. Here it is fed the verify cost measured above,
#   `CostModel(k_max=..., verify_cost=verify_cost)`, so where a long verify is dear it drafts short, or not at all.
# * **confidence stop**: drafts until the drafter's own probability of its token falls below a threshold (0.4 here;
#   transformers' `assistant_confidence_threshold`).
# * **survival stop**: the confidence stop with its threshold derived instead of chosen. After j drafted tokens
#   the chain survives verification with probability about S = q₁·q₂·…·q_j (the drafter's own probabilities, if
#   they are calibrated), so one more token adds about S·q_j expected tokens; it costs one draft step *c* plus the
#   verify's growth V(j+1) − V(j), from the curve measured above. It drafts on while that marginal rate is at least
#   the round's rate so far (`SurvivalStop(k_max=..., verify_cost=verify_cost)`; `labkit.core.draft_length.StopRule`):
#   where a longer verify is dear it stops early even when the drafter is confident.
# * **transformers' heuristic**: *k* + 2 after a round whose every draft was accepted, *k* − 1 otherwise.
#
# No policy changes *what* is generated — verification alone decides which drafts are kept — only how much drafting
# each round pays for. Below, the four policies run against the best fixed *k* the sweep found, on the same prompts,
# with plain decoding as the baseline, all of them interleaved prompt by prompt and repeated, so that the machine's
# noise hits each alike and the run measures its own spread. The top figure grows a bar per configuration (speedup, tokens
# per verify, mean *k* drafted); the bottom one shows, round by round on the first prompt, the *k* each asked for
# (dashed) and the tokens the drafter actually produced (solid): a policy is seen to move. **Stop** works here too.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.core.draft_length import ConfidenceStop, CostModel, Heuristic, SurvivalStop
from labkit.lab.widgets import PolicySweep

k_fixed = best_draft["k"]  # the fastest drafting k of the sweep above
configs = {f"fixed k = {k_fixed}": k_fixed,
           "cost model": CostModel(k_max=max(KS), verify_cost=verify_cost),
           "confidence stop": ConfidenceStop(0.4, k_max=max(KS)),
           "survival stop": SurvivalStop(k_max=max(KS), verify_cost=verify_cost),
           "heuristic": Heuristic(k_start=4, k_max=max(KS))}
race = PolicySweep(target, drafter, configs, prompts, max_new_tokens=N, repeats=ci_scale(3, 2),
                   title="fixed k or a policy")
display(race)
race.run();  # returns at once; the next cell waits for it

# %%
# NBVAL_IGNORE_OUTPUT
race.wait()
columns = ["config", "k", "policy", "speedup", "speed_spread", "decode_tok_s", "tokens_per_verify", "mean_draft_length",
           "alpha", "draft_cost"]
pd.DataFrame(race.rows)[columns].round(3)

# %% [markdown]
# The same two figures as static pictures, for the saved notebook.

# %%
# NBVAL_IGNORE_OUTPUT
display(figures.policy_speedups(race.rows))
figures.drafted_k_per_round(race.first_prompt())

# %% [markdown]
# What this race says, chosen from its numbers: the fastest configuration, its margin over the best fixed *k*, and,
# when the policies lost, why — a round's speed is tokens per verify over time per round, so a policy loses by
# drafting too short, too long, keeping fewer drafts, or paying more per round. Then the first rounds of each policy
# on the first prompt, with the reason each round gives for its draft length.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab.explain import explain_policy

policy_sentence = explain_policy(race.rows)
print(policy_sentence)
for label in ("cost model", "confidence stop", "survival stop", "heuristic"):
    print(f"\n{label}, first rounds of prompt 1:")
    for r in race.first_prompt()[label].rounds[:4]:
        print(f"  round {r.index}: asked {r.k_requested}, drafted {len(r.drafted)}, kept {r.accepted}: "
              f"{r.draft_reason}")
cm = next(r for r in race.rows if r["config"] == "cost model")
print(f"\nThe cost model's own c (in one-token forwards, from each round's timing x the verify curve) starts from the "
      f"first drafted round's measurement; pooled over its rounds, c = {cm['draft_cost']:.3f} of a verify forward "
      f"against {race.rows[1]['draft_cost']:.3f} for the fixed k. It drafted {cm['mean_draft_length']:.1f} tokens a "
      f"round on average.")

# %% [markdown]
# * The policies decide with what they have seen so far in one generation: on short outputs they spend much of it
#   learning. The fixed *k* they race against was picked *after* measuring every *k* on these very prompts — the
#   advantage a policy does not have, and the tuning it saves on new text.
# * Where the verify cost grows fast with *k* (see the top of this notebook), the cost model drafts short or stops
#   drafting; where a verify is nearly free, it drafts long while drafts keep being accepted.
# * `labkit bench --policies auto,heuristic,confidence` runs the same comparison over the bench prompts.
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
#
# What the text above claims: every *k* was measured; tokens per verify grow with *k*; the verify cost was measured
# for every *k*; the sentence says "no draft length beat plain decoding" exactly when no measured speedup exceeded
# 1; Stop ends a sweep early. And for the race: plain decoding and every configuration were measured on every
# prompt; the fixed *k* row is the sweep's best; the policies' draft length moved from round to round; the policy
# sentence names the fastest configuration and says "beat every policy" exactly when the best policy was slower
# than the best fixed *k* by more than the spread the race's own repeats showed.

# %%
assert [p["k"] for p in sweep.points] == sorted(set(KS)), "the sweep measured every k"
tpv = {p["k"]: p["tokens_per_verify"] for p in sweep.points}
assert tpv[0] == 1.0 and tpv[max(KS)] > tpv[1] > 1.0, tpv
assert 0 < alpha < 1 and c > 0
assert set(verify_cost.ratios) == set(range(1, max(KS) + 1)) and all(v >= 1.0 for v in verify_cost.ratios.values())
assert all(verify_cost.at(k) <= verify_cost.at(k + 1) for k in range(1, max(KS))), "the one curve is non-decreasing"
sentence = explain_best_k(best["k"], best["speedup"], k_theory, s_theory)
assert ("No draft length beat plain" in sentence) == (best["k"] == 0), sentence
assert short.stopped and not short.running and len(short.points) < 4, "Stop ended the second sweep early"
assert [r["config"] for r in race.rows] == ["plain", *configs], "plain and every configuration were measured"
assert all(len(race.results[label]) == len(prompts) for label in configs)
assert [r["policy"] is None for r in race.rows] == [True, True, False, False, False, False], race.rows
assert race.rows[1]["k"] == best_draft["k"] and race.rows[0]["speedup"] == 1.0
for label in ("confidence stop", "survival stop", "heuristic"):
    runs = race.results[label]
    assert len({len(r.drafted) for res in runs for r in res.rounds}) > 1, f"{label}: the draft length never moved"
assert all(r.draft_reason for label in ("cost model", "survival stop") for res in race.results[label]
           for r in res.rounds)
fastest = max((r for r in race.rows if r["k"] > 0), key=lambda r: r["speedup"])
assert policy_sentence.startswith(f"The fastest configuration was {fastest['config']}, at "
                                  f"{fastest['speedup']:.2f}x"), policy_sentence
best_policy = max((r for r in race.rows if r["policy"] is not None), key=lambda r: r["speedup"])
noise = max(best_policy["speed_spread"], race.rows[1]["speed_spread"])  # measured over the race's repeats
lost = best_policy["speedup"] < (1 - noise) * race.rows[1]["speedup"]
assert ("beat every policy" in policy_sentence) == lost and ("Why:" in policy_sentence) == lost, policy_sentence
print("✓ every k measured; tokens per verify grow with k; the sentences follow the numbers; Stop ends a sweep early;"
      " plain, the best fixed k and four policies raced, the policies moved k, the policy sentence follows the race")
