# %% [markdown]
# # 02 · Draft and verify, one round at a time
#
# **Question.** What exactly happens in one round of speculative sampling? Which numbers decide whether a drafted
# token survives, where does the replacement token come from, and what happens to the KV caches?
#
# One round, in sampling mode (Leviathan et al. 2022; Chen et al. 2023):
#
# 1. **Draft.** The drafter proposes tokens x₁ … x_k, each *drawn* from its distribution q.
# 2. **Verify.** The target runs **one** forward over the pending token and x₁ … x_k and gets its distribution p at
#    all k + 1 positions.
# 3. **Accept or reject**, left to right: draw u ~ Uniform(0, 1) and keep xᵢ if u < min(1, p(xᵢ)/q(xᵢ)). A draft
#    the target likes at least as much as the drafter is always kept; one it likes less is kept with probability
#    p/q.
# 4. At the **first rejection**, throw away the rest and draw a **replacement** from the residual
#    norm(max(0, p − q)): exactly the probability mass the drafter under-proposed. This correction is what makes the
#    output distribution equal to the target's (notebook 03 checks it).
# 5. If all k survive, the forward already computed p at position k + 1: draw a **bonus** token from it.
# 6. **Roll back** the KV cache positions of the rejected drafts.

# %% labkit-first-cell

# %% [markdown]
# ## A recorded generation
#
# The target is Gemma 3 270M, the drafter labkit's MTP head for it (notebook 04 explains it), sampling at
# temperature 0.8. The engine hands every round to its hooks as a `RoundRecord` holding everything the round
# decided — drafts, p, q, u, verdicts, the replacement or bonus token, cache lengths, timings. We record a short
# generation, then replay it round by round.

# %%
# NBVAL_IGNORE_OUTPUT
from labkit import SpeculativeDecoder, load_target
from labkit.drafters.mtp.drafter import MTPDrafter

target = load_target("gemma3-270m", device=DEVICE)
prompt = "User: Give me three tips for learning a new language.\nAssistant:"
recorded = []  # a hook is any callable: this one just keeps the records
decoder = SpeculativeDecoder(target, MTPDrafter.pretrained("gemma3-270m"), k=4, hooks=[recorded.append])
result = decoder.generate(prompt, max_new_tokens=ci_scale(40, 24), temperature=0.8, seed=3)
print(f"{len(recorded)} rounds, {len(result.token_ids)} tokens")

# %% [markdown]
# ## Step through the rounds
#
# Press **next round ▶**. For every drafted token the table shows q(x) (how likely the drafter thought it was),
# p(x) (how likely the target thinks it is), the uniform draw u and the test min(1, p/q). Below it: how the round
# ended, and both KV caches — target and drafter — before and after (grey = reused, green = computed and kept,
# red = rolled back). Hover a coloured token for its numbers.
#
# *(Without a running kernel you see round 0 as a static copy.)*

# %%
# NBVAL_IGNORE_OUTPUT
from labkit.lab.widgets import RoundStepper

stepper = RoundStepper(result, target.tokenizer, prompt=prompt)
stepper

# %% [markdown]
# ## The same numbers as a table
#
# One row per drafted token. Note the pattern of the `verdict` column: within a round it is a run of `accepted`,
# then at most one `rejected` (the first rejection); later drafts are `unverified` (never checked).

# %%
# NBVAL_IGNORE_OUTPUT
tokens = result.to_dataframe(per="token")
tokens["text"] = [target.tokenizer.decode([t]) for t in tokens.token]
tokens["min(1, p/q)"] = (tokens.p / tokens.q).clip(upper=1)
tokens[["round", "position", "text", "q", "p", "min(1, p/q)", "u", "verdict"]].head(16).round(3)

# %% [markdown]
# ## Check: the acceptance rule, round by round
#
# Every verdict must follow from the recorded numbers: kept exactly while u < min(1, p/q), a rejection ends the
# round, then a replacement — or, after a full acceptance, a bonus.

# %%
for r in result.rounds:
    keep = [u < min(1.0, p / q) for p, q, u in zip(r.p, r.q, r.u)]
    first_no = keep.index(False) if False in keep else len(keep)
    assert r.accepted == first_no, (r.index, keep, r.accepted)
    if r.drafted:
        assert r.next_kind == ("bonus" if r.accepted == len(r.drafted) else "replacement")
    assert r.emitted[: r.accepted] == r.drafted[: len(r.emitted[: r.accepted])]
stepper.go(len(result.rounds) - 1)
assert stepper.index == len(result.rounds) - 1 and "Round" in stepper.view.value
stepper.go(0)  # back to the first round for the reader
print("✓ every round follows the rule u < min(1, p/q); the stepper reaches the last round")
