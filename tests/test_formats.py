"""Every engine's format read into Counts (labkit.engines.formats), and the shared quantities from them.

The fixtures are written by hand from each engine's documented field names (the docstrings in formats.py name the
sources), not captured from live servers: only llama.cpp and vLLM ran here. Every expected number is derived by hand
in the comment next to it, so a wrong mapping fails.
"""

import pytest

from labkit.core import metrics
from labkit.engines import formats

LLAMACPP = """\
# TYPE llamacpp:spec_decode_num_drafts_total counter
llamacpp:spec_decode_num_drafts_total 10
# TYPE llamacpp:spec_decode_num_draft_tokens_total counter
llamacpp:spec_decode_num_draft_tokens_total 30
# TYPE llamacpp:spec_decode_num_accepted_tokens_total counter
llamacpp:spec_decode_num_accepted_tokens_total 18
# TYPE llamacpp:spec_decode_num_accepted_tokens_per_pos_total counter
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 8
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="1"} 6
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="2"} 4
"""


def test_llama_cpp_metrics():
    c = formats.spec_counters(LLAMACPP)
    assert (c.drafts, c.draft_tokens, c.accepted, c.accepted_per_pos) == (10, 30, 18, (8, 6, 4))
    assert metrics.mean_acceptance_length(c) == pytest.approx(2.8)  # 1 + 18 / 10
    assert metrics.draft_acceptance_rate(c) == pytest.approx(0.6)  # 18 / 30
    assert metrics.acceptance_by_position(c) == pytest.approx([0.8, 0.6, 0.4])


def test_llama_cpp_timings():
    """96 tokens in 1.2 s of decoding, 60 drafted, 45 accepted: 96 - 45 = 51 verify steps; no count of drafts."""
    c = formats.timings({"predicted_n": 96, "predicted_ms": 1200.0, "draft_n": 60, "draft_n_accepted": 45,
                         "prompt_n": 12, "prompt_ms": 40.0})
    assert (c.drafts, c.draft_tokens, c.accepted, c.new_tokens, c.rounds) == (0, 60, 45, 96, 51)
    assert metrics.draft_acceptance_rate(c) == pytest.approx(0.75)
    assert metrics.mean_acceptance_length(c) is None  # llama.cpp's timings do not say how many steps drafted
    assert metrics.tokens_per_verify(c) == pytest.approx(96 / 51)
    assert metrics.decode_tok_s(c) == pytest.approx(80.0)  # 96 / 1.2 s


def test_mlx_vlm_server_timings():
    """mlx-vlm's server reports the same draft_n / draft_n_accepted: 12 drafted, 9 accepted, 20 tokens."""
    c = formats.timings({"draft_n": 12, "draft_n_accepted": 9, "predicted_n": 20})
    assert (c.draft_tokens, c.accepted, c.new_tokens, c.rounds) == (12, 9, 20, 11)
    assert metrics.draft_acceptance_rate(c) == pytest.approx(0.75)


VLLM_SUMMARY = {  # 20 steps: H = {0: 4, 1: 5, 2: 4, 3: 3, 4: 4}: accepted 5 + 8 + 9 + 16 = 38
    "mean_acceptance_length": 2.9, "draft_acceptance_rate": 0.475, "num_spec_steps": 20, "num_draft_tokens": 80,
    "num_accepted_draft_tokens": 38, "num_spec_tokens": 4,
    "acceptance_histogram": {"0": 4, "1": 5, "2": 4, "3": 3, "4": 4},
}


def test_vllm_per_request_summary():
    c = formats.vllm_request(VLLM_SUMMARY, {"prompt_tokens": 30, "completion_tokens": 60, "total_tokens": 90})
    assert (c.drafts, c.draft_tokens, c.accepted, c.new_tokens, c.rounds) == (20, 80, 38, 60, 22)  # 60 - 38
    assert c.accepted_per_pos == (16, 11, 7, 4)  # steps with n > 0, > 1, > 2, > 3
    assert metrics.mean_acceptance_length(c) == pytest.approx(VLLM_SUMMARY["mean_acceptance_length"])  # 1 + 38/20
    assert metrics.draft_acceptance_rate(c) == pytest.approx(VLLM_SUMMARY["draft_acceptance_rate"])  # 38 / 80
    assert metrics.acceptance_by_position(c) == pytest.approx([0.8, 0.55, 0.35, 0.2])
    assert metrics.tokens_per_verify(c) == pytest.approx(60 / 22)
    assert formats.vllm_request(None, None) == metrics.Counts()  # a server without per-request metrics


def test_vllm_per_request_detailed():
    """Per step (drafted, accepted): (4, 4), (4, 1), (4, 0), (2, 2): two rejections, reach per position exact."""
    spec = {"num_spec_steps": 4, "num_draft_tokens": 14, "num_accepted_draft_tokens": 7,
            "per_step_drafted": [4, 4, 4, 2], "per_step_accepted": [4, 1, 0, 2]}
    c = formats.vllm_request(spec, {"completion_tokens": 11})
    assert (c.drafts, c.draft_tokens, c.accepted, c.rejections, c.new_tokens, c.rounds) == (4, 14, 7, 2, 11, 4)
    assert (c.accepted_per_pos, c.verified_per_pos, c.drafted_per_pos) == ((3, 2, 1, 1), (4, 3, 1, 1), (4, 4, 3, 3))
    assert metrics.alpha(c) == pytest.approx(7 / 9)  # 7 / (7 + 2)
    assert metrics.conditional_acceptance_by_position(c) == pytest.approx([0.75, 2 / 3, 1.0, 1.0])


SGLANG_META = {"prompt_tokens": 12, "completion_tokens": 50, "spec_verify_ct": 20, "spec_accept_length": 2.5,
               "spec_accept_rate": 0.5, "spec_accept_histogram": [5, 5, 5, 5], "e2e_latency": 0.9}


def test_sglang_meta_info():
    """H = [5, 5, 5, 5]: accepted 0·5 + 1·5 + 2·5 + 3·5 = 30 in 20 verify steps; a chain of 3 drafts a step."""
    c = formats.sglang_meta_info(SGLANG_META, draft_tokens_per_step=3)
    assert (c.drafts, c.draft_tokens, c.accepted, c.new_tokens, c.rounds) == (20, 60, 30, 50, 20)
    assert c.accepted_per_pos == (15, 10, 5)
    assert metrics.mean_acceptance_length(c) == pytest.approx(SGLANG_META["spec_accept_length"])  # 1 + 30 / 20
    assert metrics.draft_acceptance_rate(c) == pytest.approx(SGLANG_META["spec_accept_rate"])  # 30 / 60
    assert metrics.tokens_per_verify(c) == pytest.approx(2.5)
    assert metrics.draft_acceptance_rate(formats.sglang_meta_info(SGLANG_META)) is None  # draft length unknown


def test_sglang_accept_length_alone():
    """No histogram: accepted = (accept length - 1) x verify steps, exact after rounding: 1 + 8/7 -> 8."""
    c = formats.sglang_meta_info({"spec_verify_ct": 7, "spec_accept_length": 1 + 8 / 7, "completion_tokens": 15})
    assert (c.drafts, c.accepted, c.rounds, c.accepted_per_pos) == (7, 8, 7, ())
    assert metrics.mean_acceptance_length(c) == pytest.approx(1 + 8 / 7)


def test_sglang_gauges_are_rates_not_counts():
    text = ('# TYPE sglang:spec_accept_length gauge\nsglang:spec_accept_length{model_name="m"} 2.4\n'
            '# TYPE sglang:spec_accept_rate gauge\nsglang:spec_accept_rate{model_name="m"} 0.6\n'
            '# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs{model_name="m"} 1\n')
    assert formats.sglang_gauges(text) == pytest.approx({"spec_accept_length": 2.4, "spec_accept_rate": 0.6})


def test_lmstudio_stats():
    """40 drafted, 30 accepted (8 rejected, 2 ignored), 64 tokens: 64 - 30 = 34 verify steps; no step count."""
    stats = {"tokens_per_second": 50.1, "time_to_first_token": 0.1, "generation_time": 1.9,
             "stop_reason": "maxPredictedTokensReached", "draft_model": "qwen2.5-0.5b-instruct",
             "total_draft_tokens_count": 40, "accepted_draft_tokens_count": 30, "rejected_draft_tokens_count": 8,
             "ignored_draft_tokens_count": 2}
    c = formats.lmstudio_stats(stats, {"prompt_tokens": 9, "completion_tokens": 64, "total_tokens": 73})
    assert (c.drafts, c.draft_tokens, c.accepted, c.new_tokens, c.rounds) == (0, 40, 30, 64, 34)
    assert metrics.draft_acceptance_rate(c) == pytest.approx(0.75)
    assert metrics.mean_acceptance_length(c) is None


def test_ollama_api_and_log_line():
    """The API: 100 tokens in 2 s of decoding, 2.6 s in all; nothing about drafts. The log: one rate a request."""
    resp = {"model": "gemma4", "response": "...", "done": True, "eval_count": 100, "eval_duration": 2_000_000_000,
            "prompt_eval_count": 20, "prompt_eval_duration": 500_000_000, "total_duration": 2_600_000_000}
    c = formats.ollama_response(resp)
    assert (c.drafts, c.draft_tokens, c.accepted, c.new_tokens, c.rounds) == (0, 0, 0, 100, 0)
    assert metrics.decode_tok_s(c) == pytest.approx(50.0)
    assert metrics.end_to_end_tok_s(c) == pytest.approx(100 / 2.6)
    assert metrics.draft_acceptance_rate(c) is None  # not in its API
    log = ('time=2026-11-02T10:00:01 level=INFO source=runner.go msg="draft acceptance = 0.68"\n'
           'time=2026-11-02T10:00:03 level=INFO msg="request done"\n'
           'time=2026-11-02T10:00:09 level=INFO source=runner.go msg="draft acceptance = 73.5%"\n')
    assert formats.ollama_log_acceptance(log) == pytest.approx([0.68, 0.735])


def test_mlx_lm_from_draft_flags():
    """Steps: T T F | F | T F | T T T F | T (cut at the budget): accepted 2, 0, 1, 3, 1 = 7 in 5 steps."""
    flags = [True, True, False, False, True, False, True, True, True, False, True]
    c = formats.mlx_from_draft(flags, draft_tokens_per_step=3)
    assert (c.drafts, c.draft_tokens, c.accepted, c.new_tokens, c.rounds) == (5, 15, 7, 11, 5)
    assert c.accepted_per_pos == (4, 2, 1)  # steps with n > 0, > 1, > 2
    assert metrics.mean_acceptance_length(c) == pytest.approx(2.4)  # 1 + 7 / 5
    assert metrics.draft_acceptance_rate(c) == pytest.approx(7 / 15)
    assert metrics.tokens_per_verify(c) == pytest.approx(2.2)  # 11 / 5


def test_tensorrt_llm_iteration_stats():
    """Two drafting iterations (2 requests: 8 drafted, 5 accepted; 1 request: 4 drafted, 1 accepted) and a prefill
    one without spec stats: 3 drafts, 12 drafted, 6 accepted; draft time 0.25 x 20 ms + 0.1 x 10 ms = 6 ms."""
    iterations = [
        {"iter": 0, "iterLatencyMS": 30.0, "numActiveRequests": 2},
        {"iter": 1, "iterLatencyMS": 20.0, "specDecodingStats": {"numDraftTokens": 8, "numAcceptedTokens": 5,
         "numRequestsWithDraftTokens": 2, "acceptanceLength": 3.5, "draftOverhead": 0.25}},
        {"iter": 2, "iterLatencyMS": 10.0, "specDecodingStats": {"numDraftTokens": 4, "numAcceptedTokens": 1,
         "numRequestsWithDraftTokens": 1, "acceptanceLength": 2.0, "draftOverhead": 0.1}},
    ]
    c = formats.tensorrt_llm_iterations(iterations)
    assert (c.drafts, c.draft_tokens, c.accepted, c.new_tokens, c.rounds) == (3, 12, 6, 0, 0)
    assert metrics.mean_acceptance_length(c) == pytest.approx(3.0)  # 1 + 6 / 3 (its per-iteration 3.5 and 2.0)
    assert metrics.draft_acceptance_rate(c) == pytest.approx(0.5)
    assert (c.draft_seconds, c.verify_seconds) == pytest.approx((0.006, 0.024))


def test_histogram_as_list_or_map():
    assert formats.per_pos_from_histogram([1, 2, 0, 3]) == (5, 3, 3)  # n > 0: 2 + 3; n > 1: 3; n > 2: 3
    assert formats.per_pos_from_histogram({"3": 3, "1": 2, "0": 1}) == (5, 3, 3)
    assert formats.per_pos_from_histogram(None) == ()
