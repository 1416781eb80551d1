"""The server engine's counter parsing. vLLM cannot run here (no GPU): its exposition is the format vLLM documents
(docs/features/speculative_decoding/acceptance_metrics, prometheus_client output), not captured from a live server."""

import pytest

from labkit.core import metrics
from labkit.engines.server import ServerEngine, ServerError, difference, spec_counters

VLLM = """\
# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="google/gemma-4-E4B-it"} 40.0
# HELP vllm:spec_decode_num_draft_tokens_total Number of draft tokens.
# TYPE vllm:spec_decode_num_draft_tokens_total counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="google/gemma-4-E4B-it"} 160.0
# HELP vllm:spec_decode_num_accepted_tokens_total Number of accepted tokens.
# TYPE vllm:spec_decode_num_accepted_tokens_total counter
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="google/gemma-4-E4B-it"} 70.0
# HELP vllm:spec_decode_num_accepted_tokens_per_pos_total Accepted tokens per draft position.
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="google/gemma-4-E4B-it",position="0"} 30.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="google/gemma-4-E4B-it",position="1"} 20.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="google/gemma-4-E4B-it",position="2"} 12.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="google/gemma-4-E4B-it",position="3"} 8.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="google/gemma-4-E4B-it"} 0.0
"""


def test_vllm_counters_give_the_shared_quantities():
    c = spec_counters(VLLM)
    assert (c.drafts, c.draft_tokens, c.accepted, c.accepted_per_pos) == (40, 160, 70, (30, 20, 12, 8))
    assert metrics.mean_acceptance_length(c) == pytest.approx(1 + 70 / 40)  # vLLM's own definition
    assert metrics.draft_acceptance_rate(c) == pytest.approx(70 / 160)
    assert metrics.acceptance_by_position(c) == pytest.approx([0.75, 0.5, 0.3, 0.2])


def _two_engines(text):
    """The same server with a second engine: every spec sample repeated with engine="1", next to its original."""
    out = []
    for line in text.splitlines():
        out.append(line)
        if line.startswith("vllm:spec_decode"):
            out.append(line.replace('engine="0"', 'engine="1"'))
    return "\n".join(out) + "\n"


def test_label_sets_are_summed_and_differences_taken():
    both = spec_counters(_two_engines(VLLM))
    assert (both.drafts, both.accepted_per_pos) == (80, (60, 40, 24, 16))
    d = difference(both, spec_counters(VLLM))
    assert (d.drafts, d.draft_tokens, d.accepted, d.accepted_per_pos) == (40, 160, 70, (30, 20, 12, 8))


def test_no_speculation_means_zero_counters():
    c = spec_counters("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0.0\n")
    assert (c.drafts, c.draft_tokens, c.accepted_per_pos) == (0, 0, ())
    assert metrics.mean_acceptance_length(c) is None


def test_an_unreachable_server_is_one_line():
    with pytest.raises(ServerError) as e:
        ServerEngine("http://127.0.0.1:9")  # the discard port: nothing listens there
    assert "cannot reach the server" in str(e.value) and "\n" not in str(e.value)
