"""The server engine's counter parsing. vLLM cannot run here (no GPU): its exposition is the format vLLM documents
(docs/features/speculative_decoding/acceptance_metrics, prometheus_client output), not captured from a live server.
The ServerEngine tests at the end (kinds, vLLM's new tokens and rounds) run against a stand-in HTTP server."""

import json

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


def test_synthetic_method_flags_and_bad_alpha():
    """synthetic-ALPHA: n-gram drafts of k tokens from a one-token match, accepted at ALPHA^(j+1) by position."""
    from labkit.engines.llama_cpp import spec_args

    args = spec_args("synthetic-0.5", 3)
    assert args[args.index("--spec-synth-rates") + 1] == "0.5000,0.2500,0.1250"
    assert args[args.index("--spec-ngram-simple-size-m") + 1] == "3"
    for bad in ("synthetic-0", "synthetic-1.5", "synthetic-x"):
        with pytest.raises(ValueError, match="synthetic-ALPHA"):
            spec_args(bad, 2)


def test_verify_cost_from_free_drafts():
    """10 rounds, 6 with a draft: 6 T(k+1) + 4 T(1) = verify seconds; T(1) = 0.01 s, T(k+1) = 0.015 s -> 1.5."""
    from labkit.core.metrics import Counts, verify_cost_free_drafts

    c = Counts(drafts=6, draft_tokens=18, accepted=8, new_tokens=18, rounds=10, verify_seconds=6 * 0.015 + 4 * 0.01)
    assert verify_cost_free_drafts(c, 0.01) == pytest.approx(1.5)
    assert verify_cost_free_drafts(Counts(rounds=3, verify_seconds=0.1), 0.01) is None  # nothing drafted


def test_server_verify_cost_is_keyed_by_draft_length(monkeypatch):
    """llama.cpp's prompt_ms for a batch of n tokens: a VerifyCost keyed by k = n - 1, from per-round ratios."""
    from labkit.core.verify_cost import VerifyCost

    engine = ServerEngine.__new__(ServerEngine)  # no server: the timings below stand in for llama.cpp's
    engine.url, engine.kind = "http://fake", "llama.cpp"
    ms = {1: 10.0, 2: 10.5, 5: 9.0}  # a 5-token batch measured cheaper than one token: clamped at 1

    def request(path, body):
        n = len(body["prompt"])
        return {"timings": {"prompt_n": n + 1, "prompt_ms": ms[n]}}

    monkeypatch.setattr(engine, "_request", request)
    cost = engine.verify_cost([1, 4], rounds=4)
    assert isinstance(cost, VerifyCost) and cost.ks == [1, 4]
    assert cost.raw == pytest.approx({1: 1.05, 4: 0.9}) and cost.spread == pytest.approx({1: 0.0, 4: 0.0})
    assert cost.ratios == pytest.approx({1: 1.025, 4: 1.025})  # at least 1, non-decreasing (VerifyCost.from_measured)
    assert "llama.cpp" in cost.source and "4 interleaved rounds" in cost.source
    with pytest.raises(ServerError, match="prompt_ms"):
        engine.kind = "vllm"
        engine.verify_cost([1])


def test_labkit_and_transformers_are_engines_with_the_same_greedy_text():
    """The in-process engines behind the protocol: same greedy tokens, labkit's counts from its rounds."""
    from labkit.drafters import NGramDrafter
    from labkit.engines import Engine, LabkitEngine, TransformersEngine
    from labkit.models import as_target, tiny_model

    target = as_target(tiny_model(vocab_size=32, layers=2, hidden=32, seed=0), None)
    prompt = [1, 5, 9, 14, 3, 7, 22, 5, 9, 14, 30, 2, 11]
    plain, spec = LabkitEngine(target), LabkitEngine(target, NGramDrafter(2), k=3)
    hf = TransformersEngine(target, "greedy")
    runs = {e.name: e.run(prompt, 20) for e in (plain, spec, hf)}
    assert all(isinstance(e, Engine) for e in (plain, spec, hf))  # the protocol is structural
    tokens = {name: r.tokens for name, r in runs.items()}
    assert len(set(map(tuple, tokens.values()))) == 1, tokens
    assert runs[spec.name].counts.rounds < 20 and runs[spec.name].counts.new_tokens == 20
    assert runs[hf.name].counts.new_tokens == 20 and runs[hf.name].seconds > 0
    with pytest.raises(ValueError, match="assistant"):
        TransformersEngine(target, "assistant", 2)


# ------------------------------------------------------------------------------------ a server the user runs, by kind


class _Fake:
    """A stand-in server on a free port: ``routes`` maps a path to a function of the request body giving the
    answer (a dict is sent as JSON, a str as text, None is a 404)."""

    def __init__(self, routes):
        import http.server
        import threading

        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body):
                route = fake.routes.get(self.path)
                out = None if route is None else route(body)
                if out is None:
                    self.send_error(404)
                    return
                data = (out if isinstance(out, str) else json.dumps(out)).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer(None)

            def do_POST(self):
                self._answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

            def log_message(self, *args):
                pass

        self.routes = routes
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()



def _vllm_fake():
    """vLLM after one request: its counters add 40 drafts, 160 draft tokens, 70 accepted (VLLM above, from 0);
    the response carries usage.completion_tokens 200 and the per-request summary."""
    served = {"n": 0}
    empty = "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0.0\n"

    def complete(body):
        served["n"] += 1
        return {"choices": [{"text": "abc", "index": 0}], "usage": {"prompt_tokens": 5, "completion_tokens": 200},
                "metrics": {"speculative_decoding": {"num_spec_steps": 40, "num_draft_tokens": 160,
                                                     "num_accepted_draft_tokens": 70}}}

    return _Fake({"/v1/models": lambda _: {"data": [{"id": "m", "owned_by": "vllm"}]},
                  "/metrics": lambda _: VLLM if served["n"] else empty, "/v1/completions": complete})


def test_server_engine_fills_new_tokens_and_rounds_for_vllm():
    """The issue's vLLM run had new_tokens = rounds = 0: usage.completion_tokens now gives new tokens, and rounds =
    200 - 70 accepted, so tokens per verify and tok/s exist."""
    fake = _vllm_fake()
    try:
        engine = ServerEngine(fake.url, model="m")
        assert engine.kind == "vllm"  # detected by owned_by
        run = engine.run("hello", 200)
        c = run.counts
        assert (c.drafts, c.draft_tokens, c.accepted, c.new_tokens, c.rounds, c.runs) == (40, 160, 70, 200, 130, 1)
        assert metrics.tokens_per_verify(c) == pytest.approx(200 / 130)
        assert metrics.end_to_end_tok_s(c) > 0 and run.raw["num_spec_steps"] == 40
        assert ServerEngine(fake.url, model="m", kind="vllm").kind == "vllm"
    finally:
        fake.close()


def test_server_engine_sglang_and_lmstudio_read_their_responses():
    meta = {"completion_tokens": 50, "spec_verify_ct": 20, "spec_accept_histogram": [5, 5, 5, 5]}
    stats = {"total_draft_tokens_count": 40, "accepted_draft_tokens_count": 30}
    fake = _Fake({"/get_model_info": lambda _: {"model_path": "m"},
                  "/generate": lambda b: {"text": "x", "output_ids": list(range(50)), "meta_info": meta}
                  if b["sampling_params"]["max_new_tokens"] == 50 else None,
                  "/api/v0/models": lambda _: {"data": [{"id": "m"}]},
                  "/api/v0/completions": lambda b: {"choices": [{"text": "y"}], "stats": stats,
                                                    "usage": {"completion_tokens": 64}}})
    try:
        c = ServerEngine(fake.url, kind="sglang").run("hi", 50).counts
        assert (c.drafts, c.accepted, c.new_tokens, c.rounds, c.accepted_per_pos) == (20, 30, 50, 20, (15, 10, 5))
        lm = ServerEngine(fake.url, kind="lmstudio").run("hi", 64)
        assert (lm.counts.draft_tokens, lm.counts.accepted, lm.counts.new_tokens, lm.text) == (40, 30, 64, "y")
    finally:
        fake.close()


def test_a_wrong_or_unknown_kind_is_one_line():
    fake = _vllm_fake()
    try:
        for kind in ("llama.cpp", "sglang", "lmstudio"):
            with pytest.raises(ServerError, match=f"does not answer as {kind}") as e:
                ServerEngine(fake.url, kind=kind)
            assert "\n" not in str(e.value)
    finally:
        fake.close()
    with pytest.raises(ServerError, match="unknown server kind 'tgi'"):
        ServerEngine("http://127.0.0.1:9", kind="tgi")
    with pytest.raises(ServerError, match="cannot reach the server"):
        ServerEngine("http://127.0.0.1:9", kind="vllm")


def test_detection_of_lmstudio_and_a_plain_openai_server():
    """LM Studio by its /api/v0; any other OpenAI-compatible server without /metrics still gives its new tokens."""
    models = {"data": [{"id": "m", "owned_by": "organization_owner"}]}
    lmstudio = _Fake({"/v1/models": lambda _: models, "/api/v0/models": lambda _: models})
    other = _Fake({"/v1/models": lambda _: {"data": [{"id": "m", "owned_by": "someone"}]},
                   "/v1/completions": lambda b: {"choices": [{"text": "z"}], "usage": {"completion_tokens": 7}}})
    try:
        assert ServerEngine(lmstudio.url).kind == "lmstudio"
        engine = ServerEngine(other.url)
        c = engine.run("hi", 7).counts
        assert (engine.kind, c.new_tokens, c.rounds, c.drafts) == ("openai", 7, 7, 0)
    finally:
        lmstudio.close()
        other.close()
