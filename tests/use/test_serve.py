"""The HTTP service: endpoints, limits, API key, batching under concurrency, overload, timeouts, shutdown."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from simcse.core.errors import SimCSEError  # noqa: E402
from simcse.modeling.encoder import Encoder  # noqa: E402
from simcse.serve import ServeSettings, add_arguments, create_app, run  # noqa: E402
from simcse.serve.settings import LOOPBACK_HOSTS, settings_from_args  # noqa: E402
from simcse.use.api import SimCSE  # noqa: E402
from tests.helpers import SENTENCES, make_tiny_bert  # noqa: E402

JSON = {"content-type": "application/json"}
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def serve_bert(tmp_path_factory) -> Path:
    """A tiny BERT with large initial weights, so that different texts get clearly different vectors."""
    import torch
    from transformers import BertConfig, BertModel

    path = make_tiny_bert(tmp_path_factory.mktemp("serve-bert"), dropout=0.0)
    config = BertConfig.from_pretrained(str(path))
    config.initializer_range = 0.5
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def model(serve_bert) -> SimCSE:
    m = SimCSE(Encoder.load(serve_bert, "avg"), device="cpu")
    m.build_index(SENTENCES, index="flat")
    return m


@pytest.fixture(scope="module")
def index_dir(model, tmp_path_factory) -> Path:
    return model.save_index(tmp_path_factory.mktemp("serve-index"))


@contextmanager
def make_client(model: SimCSE, raise_server_exceptions: bool = True, **options):
    app = create_app(model, ServeSettings(**options))
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as c:
        yield c


@pytest.fixture(scope="module")
def client(model):
    with make_client(model) as c:
        yield c


class Gate:
    """Replaces ``encode_tokenized``: records batch sizes; the first call waits until released."""

    def __init__(self, original, block_first: bool = True):
        self.original = original
        self.calls: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not block_first:
            self.release.set()

    def __call__(self, tokens, *args, **kwargs):
        self.calls.append(len(tokens))
        self.started.set()
        assert self.release.wait(20), "the test never released the encoder"
        return self.original(tokens, *args, **kwargs)


@pytest.fixture
def gate(model, monkeypatch) -> Gate:
    g = Gate(model.encoder.encode_tokenized)
    monkeypatch.setattr(model.encoder, "encode_tokenized", g)
    yield g
    g.release.set()


def post_in_thread(c: TestClient, results: list, body: dict) -> threading.Thread:
    """POST ``body`` to /v1/embeddings from a new thread, appending the response to ``results``."""
    thread = threading.Thread(target=lambda: results.append(c.post("/v1/embeddings", json=body)))
    thread.start()
    return thread


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and isinstance(error["code"], str)
    if code is not None:
        assert error["code"] == code, error
    return error


# ---------------------------------------------------------------------------------------------- endpoints
def test_embeddings_match_encode_and_count_tokens(client, model, serve_bert):
    texts = ["a man is playing a guitar .", "two dogs run in the park", "the old man said no"]
    r = client.post(
        "/v1/embeddings", json={"input": texts, "model": "simcse"}
    )  # the alias every server takes
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == serve_bert.name  # the served name, never an echo
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, model.encode(texts), atol=1e-5)
    tokens = sum(len(ids) for ids in model.encoder.tokenize(texts).input_ids)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_requests_truncate_where_the_model_encodes(serve_bert):
    """A served text is truncated where the same SimCSE's encode truncates it (its max_length), not at the
    encoder's limit: the service's vectors, an index built in Python and its queries all agree."""
    long_text = " ".join(["word"] * 200)
    encoder = Encoder.load(serve_bert, "avg")
    assert encoder.max_length > 16
    short = SimCSE(encoder, device="cpu", max_length=16)
    with make_client(short) as c:
        body = c.post("/v1/embeddings", json={"input": long_text}).json()
    got = np.array(body["data"][0]["embedding"], dtype=np.float32)
    np.testing.assert_allclose(got, short.encode(long_text), atol=1e-5)
    assert body["usage"]["prompt_tokens"] == 16
    assert short.at_model_limit().max_length == encoder.max_length  # what simcse serve does


def test_embeddings_single_string_base64_and_default_model_name(client, model, serve_bert):
    text = "a cat is sitting under the tree"
    floats = client.post("/v1/embeddings", json={"input": text}).json()
    assert floats["model"] == serve_bert.name and len(floats["data"]) == 1
    b64 = client.post("/v1/embeddings", json={"input": text, "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (model.dim,)
    np.testing.assert_allclose(decoded, np.array(floats["data"][0]["embedding"], dtype=np.float32), atol=0)
    np.testing.assert_allclose(decoded, model.encode(text), atol=1e-5)


def test_embeddings_dimensions_must_equal_model_dim(client, model):
    ok = client.post("/v1/embeddings", json={"input": "a dog", "dimensions": model.dim})
    assert ok.status_code == 200
    assert_error(
        client.post("/v1/embeddings", json={"input": "a dog", "dimensions": 8}), 422, "invalid_value"
    )
    bad = client.post("/v1/embeddings", json={"input": "a dog", "encoding_format": "int8"})
    assert_error(bad, 422, "invalid_value")


def test_similarity_scalar_and_matrix(client, model):
    a, b = "a man is playing a guitar .", "a boy plays with a red ball"
    r = client.post("/similarity", json={"a": a, "b": b})
    assert r.status_code == 200 and r.json()["object"] == "similarity"
    assert r.json()["scores"] == pytest.approx(model.similarity(a, b), abs=1e-5)
    many = client.post("/similarity", json={"a": [a, b], "b": [a, b, "two dogs"]}).json()["scores"]
    assert np.array(many).shape == (2, 3)
    np.testing.assert_allclose(many, model.similarity([a, b], [a, b, "two dogs"]), atol=1e-5)
    one_to_many = client.post("/similarity", json={"a": a, "b": [a, b]}).json()["scores"]
    assert np.array(one_to_many).shape == (1, 2)  # a string counts as a list of one: a matrix


def test_search_ranked_like_the_library(client, model):
    query = "a man plays the guitar"
    r = client.post("/search", json={"query": query, "top_k": 5})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert len(hits) == 5
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    expected = model.search(query, top_k=5)
    assert [h["sentence"] for h in hits] == [s for s, _ in expected]
    assert all(SENTENCES[h["id"]] == h["sentence"] for h in hits)
    threshold = scores[2]
    above = client.post("/search", json={"query": query, "top_k": 5, "threshold": threshold}).json()[
        "results"
    ]
    assert [h["id"] for h in above] == [h["id"] for h in hits if h["score"] >= threshold]
    batch = client.post("/search", json={"query": [query, "dogs in the park"], "top_k": 3}).json()["results"]
    assert len(batch) == 2 and all(len(row) == 3 for row in batch)
    # batched with another query (other padding): the same scores up to float noise
    np.testing.assert_allclose([h["score"] for h in batch[0]], scores[:3], atol=1e-5)


@pytest.mark.parametrize("top_k", [0, 101, 2.5, "3", True, None])
def test_search_top_k_validated(client, top_k):
    assert_error(client.post("/search", json={"query": "a dog", "top_k": top_k}), 422, "invalid_value")


def test_search_without_index_is_409(model):
    bare = SimCSE(model.encoder)
    with make_client(bare) as c:
        assert_error(c.post("/search", json={"query": "a dog"}), 409, "no_index")
        assert c.get("/health").json()["index_size"] == 0
        assert c.post("/similarity", json={"a": "x", "b": "y"}).status_code == 200


def test_health(client, model, serve_bert):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == serve_bert.name and h["dim"] == model.dim
    assert h["index_size"] == len(SENTENCES) and h["queue_depth"] == 0 and h["api_key_required"] is False
    assert h["limits"]["max_batch"] == 256


def test_demo_page_and_its_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert 'id="search-form"' in page.text and 'id="similarity-form"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    script = client.get("/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "innerHTML" not in script.text and "textContent" in script.text
    assert client.get("/style.css").status_code == 200
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in page.headers


# ---------------------------------------------------------------------------------------------- limits
LIMITS = {"max_batch": 4, "max_text_chars": 50, "max_body_bytes": 2048, "queue_size": 16}


@pytest.fixture(scope="module")
def limited(model):
    with make_client(model, **LIMITS) as c:
        yield c


@pytest.mark.parametrize(
    "path, body, status, code",
    [
        ("/v1/embeddings", {"input": ["a"] * 5}, 413, "too_many_inputs"),
        ("/v1/embeddings", {"input": "x" * 51}, 413, "text_too_long"),
        ("/v1/embeddings", {"input": ["ok", "y" * 51]}, 413, "text_too_long"),
        ("/similarity", {"a": ["a"] * 3, "b": ["b"] * 2}, 413, "too_many_inputs"),
        ("/search", {"query": ["q"] * 5}, 413, "too_many_inputs"),
        ("/v1/embeddings", {"input": []}, 422, "empty_input"),
        ("/v1/embeddings", {"input": ""}, 422, "empty_input"),
        ("/v1/embeddings", {"input": [1, 2, 3]}, 422, "invalid_type"),
        ("/v1/embeddings", {"input": [[1, 2], [3]]}, 422, "invalid_type"),
        ("/v1/embeddings", {"input": ["ok", None]}, 422, "invalid_type"),
        ("/v1/embeddings", {"input": {"text": "x"}}, 422, "invalid_type"),
        ("/v1/embeddings", {"model": "m"}, 422, "missing_field"),
        ("/v1/embeddings", {"input": "x", "model": 3}, 422, "invalid_type"),
        ("/similarity", {"a": "x"}, 422, "missing_field"),
        ("/similarity", {"a": "x", "b": "y", "c": "z"}, 422, "unknown_field"),
        ("/search", {"query": "x", "threshold": "high"}, 422, "invalid_value"),
        ("/search", {"queries": "x"}, 422, "unknown_field"),
        ("/v1/embeddings", {"input": "x", "mode": "fast"}, 422, "unknown_field"),
        ("/v1/embeddings", {"input": "x", "model": "bert-base-uncased"}, 404, "model_not_found"),
        ("/v1/embeddings", {"input": "x", "model": "../../etc/passwd"}, 404, "model_not_found"),
        ("/similarity", {"a": "x", "b": "y", "model": "text-embedding-3-small"}, 404, "model_not_found"),
        ("/search", {"query": "x", "model": "other"}, 404, "model_not_found"),
    ],
)
def test_limits_and_validation(limited, path, body, status, code):
    assert_error(limited.post(path, json=body), status, code)


@pytest.mark.parametrize(
    "raw, code",
    [
        (b"", "invalid_json"),
        (b"{", "invalid_json"),
        (b'{"input": NaN}', "invalid_json"),
        (b"\xff\xfe\x00", "invalid_json"),
        (b'{"input": "\\ud800"}', "invalid_text"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
        (b'["input"]', "invalid_type"),
        (b"7", "invalid_type"),
    ],
)
def test_malformed_bodies_are_422(client, raw, code):
    assert_error(client.post("/v1/embeddings", content=raw, headers=JSON), 422, code)


def test_body_too_large_by_header_and_by_stream(limited):
    big = json.dumps({"input": "x" * 4000}).encode()
    assert_error(limited.post("/v1/embeddings", content=big, headers=JSON), 413, "body_too_large")
    # no Content-Length (chunked upload): the streamed size is counted
    r = limited.post("/v1/embeddings", content=iter([big[:1000], big[1000:]]), headers=JSON)
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "body_too_large")


def test_body_larger_than_its_content_length_is_413(model):
    """A client that declares a small Content-Length but streams more is cut off at the limit."""
    app = create_app(model, ServeSettings(**LIMITS))
    chunks = [b'{"input": "', b"x" * 1500, b"x" * 1500, b'"}']
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/embeddings", "raw_path": b"/v1/embeddings", "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), (b"content-length", b"20")],
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body["error"]["code"] == "body_too_large"


def test_content_type_must_be_json(client):
    r = client.post("/v1/embeddings", content=b'{"input": "x"}', headers={"content-type": "text/plain"})
    assert_error(r, 415, "unsupported_media_type")


def test_unknown_route_and_wrong_method_are_json(client):
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.post("/v2/embeddings", json={"input": "x"}), 404, "not_found")
    r = client.get("/v1/embeddings")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    assert_error(client.post("/health", json={}), 405, "method_not_allowed")


def test_encoder_failure_is_500_json(model, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(model.encoder, "encode_tokenized", broken)
    with make_client(model, raise_server_exceptions=False) as c:
        error = assert_error(c.post("/v1/embeddings", json={"input": "x"}), 500, "internal_error")
        assert "boom" not in error["message"]  # no internals leak to clients


# ---------------------------------------------------------------------------------------------- security
def test_api_key(model):
    with make_client(model, api_key="s3cret") as c:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"X-API-Key": "s3cre"},
            {"Authorization": "s3cret"},
        ):
            r = c.post("/v1/embeddings", json={"input": "x"}, headers=headers)
            error = assert_error(r, 401)
            assert error["type"] == "authentication_error" and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/search", json={"query": "x"}).status_code == 401
        assert c.post("/similarity", json={"a": "x", "b": "y"}).status_code == 401
        assert (
            c.post(
                "/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer s3cret"}
            ).status_code
            == 200
        )
        assert c.post("/search", json={"query": "x"}, headers={"X-API-Key": "s3cret"}).status_code == 200
        # the page and /health are open (no indexed text there); /health tells the page to ask for the key
        assert c.get("/").status_code == 200
        assert c.get("/health").json()["api_key_required"] is True


def test_key_checked_before_the_body_is_read(model):
    with make_client(model, api_key="k", **LIMITS) as c:
        assert_error(c.post("/v1/embeddings", content=b"x" * 5000, headers=JSON), 401, "missing_api_key")


def test_loopback_server_rejects_foreign_host_headers(model):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    with make_client(model, allowed_hosts=LOOPBACK_HOSTS) as c:
        assert_error(c.get("/health", headers={"host": "evil.example"}), 400, "invalid_host")
        assert_error(c.get("/health", headers={"host": "evil.example:8000"}), 400, "invalid_host")
        for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
            assert c.get("/health", headers={"host": host}).status_code == 200, host


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_bind_loopback(monkeypatch):
    monkeypatch.delenv("SIMCSE_API_KEY", raising=False)
    args = parse([])
    assert args.model is None and args.host == "127.0.0.1" and args.port == 8000
    s = settings_from_args(args)
    assert s.host == "127.0.0.1" and s.api_key is None and s.allowed_hosts == LOOPBACK_HOSTS
    assert (s.max_batch, s.max_text_chars, s.max_body_bytes, s.timeout) == (
        256,
        10_000,
        4 * 1024 * 1024,
        30.0,
    )
    assert ServeSettings().host == "127.0.0.1"
    monkeypatch.setenv("SIMCSE_API_KEY", "from-env")
    assert settings_from_args(parse([])).api_key == "from-env"
    assert settings_from_args(parse(["--api-key", "flag"])).api_key == "flag"
    assert settings_from_args(parse(["--host", "0.0.0.0"])).allowed_hosts == ("*",)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--queue-size", "10", "--max-batch", "20"], "--queue-size"),
        (["--timeout", "0"], "--timeout"),
        (["--port", "70000"], "--port"),
        (["--api-key", " "], "--api-key"),
    ],
)
def test_bad_settings_are_one_line_errors(argv, words):
    with pytest.raises(SimCSEError, match=words) as e:
        settings_from_args(parse(argv))
    assert "\n" not in str(e.value)


def test_run_refuses_a_bad_index_before_serving(serve_bert, tmp_path):
    with pytest.raises(SimCSEError) as e:
        run(parse([str(serve_bert), "--port", "0", "--index", str(tmp_path / "missing")]))
    assert "missing" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SimCSEError, match="not found"):
        run(parse([str(tmp_path / "no-model"), "--port", "0"]))


def test_run_refuses_a_busy_port(serve_bert):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SimCSEError, match=f"cannot listen on 127.0.0.1:{port}"):
            run(parse([str(serve_bert), "--port", str(port)]))


# ---------------------------------------------------------------------------------------------- batching
def test_concurrent_requests_are_batched_and_get_their_own_vectors(model, gate):
    texts = [
        f"request {i} : " + " ".join(["dog", "cat", "man", "tree"][: 1 + i % 4]) + " ." * i for i in range(20)
    ]
    gate.release.set()  # let the reference encodings through, one text at a time
    expected = {t: model.encoder.encode([t], normalize=True)[0] for t in texts}
    gate.calls.clear()
    gate.started.clear()
    gate.release.clear()
    results: dict[str, object] = {}
    with make_client(model) as c:
        batcher = c.app.state.batcher

        def call(text: str) -> None:
            results[text] = c.post("/v1/embeddings", json={"input": text})

        first = threading.Thread(target=call, args=(texts[0],))
        first.start()
        assert gate.started.wait(10)  # the worker is busy with the first request...
        threads = [threading.Thread(target=call, args=(t,)) for t in texts[1:]]
        for t in threads:
            t.start()
        wait_until(lambda: batcher.depth == 19)  # ...while the other 19 queue up
        assert c.get("/health").json()["queue_depth"] == 19  # /health answers while the encoder is busy
        gate.release.set()
        for t in [first, *threads]:
            t.join(20)
    assert gate.calls == [1, 19]  # one forward batch for the 19 concurrent requests
    for text in texts:
        r = results[text]
        assert r.status_code == 200, r.text
        got = np.array(r.json()["data"][0]["embedding"], dtype=np.float32)
        np.testing.assert_allclose(got, expected[text], atol=1e-5)
        others = min(np.abs(got - expected[t]).max() for t in texts if t != text)
        assert others > 1e-3  # the texts' vectors really differ, so a mix-up would be caught


def test_a_failing_request_does_not_fail_the_requests_batched_with_it(model, gate, monkeypatch):
    tokenize = model.encoder.tokenize

    def picky_tokenize(texts, *args, **kwargs):
        if "poison" in texts:
            raise ValueError("cannot tokenize")
        return tokenize(texts, *args, **kwargs)

    monkeypatch.setattr(model.encoder, "tokenize", picky_tokenize)
    results: dict[str, object] = {}
    with make_client(model, raise_server_exceptions=False) as c:
        batcher = c.app.state.batcher

        def call(text: str) -> None:
            results[text] = c.post("/v1/embeddings", json={"input": text})

        threads = [
            threading.Thread(target=call, args=(t,)) for t in ("first", "good one", "poison", "good two")
        ]
        threads[0].start()
        assert gate.started.wait(10)
        for t in threads[1:]:
            t.start()
        wait_until(lambda: batcher.depth == 3)  # the three are encoded as one batch, which fails...
        gate.release.set()
        for t in threads:
            t.join(20)
    assert_error(results["poison"], 500, "internal_error")  # ...then one by one: only "poison" fails
    for text in ("first", "good one", "good two"):
        assert results[text].status_code == 200, results[text].text


def test_queue_full_is_503_with_retry_after(model, gate):
    with make_client(model, max_batch=2, queue_size=2) as c:
        batcher = c.app.state.batcher
        results = []
        first = post_in_thread(c, results, {"input": "one"})
        assert gate.started.wait(10)
        second = post_in_thread(c, results, {"input": ["two", "three"]})
        wait_until(lambda: batcher.depth == 2)
        r = c.post("/similarity", json={"a": "four", "b": "five"})
        assert_error(r, 503, "queue_full")
        assert r.headers["retry-after"] == "1"
        gate.release.set()
        first.join(20)
        second.join(20)
        assert [x.status_code for x in results] == [200, 200]
        assert c.post("/v1/embeddings", json={"input": "four"}).status_code == 200  # room again


def test_timeout_is_504_and_unstarted_work_is_dropped(model, gate):
    with make_client(model, timeout=0.5) as c:
        batcher = c.app.state.batcher
        results = []
        first = post_in_thread(c, results, {"input": "one"})
        assert gate.started.wait(10)
        r = c.post("/v1/embeddings", json={"input": ["never", "encoded"]})
        assert_error(r, 504, "timeout")
        wait_until(lambda: batcher.depth == 0)  # the timed-out request left the queue
        first.join(20)
        assert_error(results[0], 504, "timeout")  # started but too slow: 504 too
        gate.release.set()
        assert c.post("/v1/embeddings", json={"input": "after"}).status_code == 200
    assert gate.calls == [1, 1]  # "one" (result discarded), then "after"; the two dropped texts never ran


# ---------------------------------------------------------------------------------------------- fuzzing
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["\ud800", "a\udfffb", "", " ", "x" * 20_000])
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = {
    "/v1/embeddings": ["input", "model", "encoding_format", "dimensions", "user"],
    "/similarity": ["a", "b", "model"],
    "/search": ["query", "top_k", "threshold", "model"],
}


def check_response(response) -> None:
    assert 200 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    if response.status_code >= 300:
        assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["code"], str)


@pytest.fixture(scope="module")
def fuzz_client(model):
    with make_client(model, raise_server_exceptions=True, max_batch=8, queue_size=64) as c:
        yield c


@pytest.mark.parametrize("path", list(FIELDS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_json_gets_2xx_or_4xx_json(fuzz_client, path, data):
    shaped = st.fixed_dictionaries({}, optional={k: json_values for k in FIELDS[path]})
    value = data.draw(json_values | shaped)
    check_response(fuzz_client.post(path, content=json.dumps(value).encode(), headers=JSON))


@pytest.mark.parametrize("path", list(FIELDS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_any_bytes_get_2xx_or_4xx_json(fuzz_client, path, raw):
    check_response(fuzz_client.post(path, content=raw, headers=JSON))


# ---------------------------------------------------------------------------------------------- real server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SIMCSE_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "simcse.serve", *args, "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO,
    )  # fmt: skip
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def read_http_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_real_server_finishes_in_flight_request_on_sigterm(serve_bert, index_dir):
    proc, port = start_server([str(serve_bert), "--pooler", "avg", "--index", str(index_dir)])
    try:
        import httpx

        r = httpx.post(f"http://127.0.0.1:{port}/search", json={"query": "a man", "top_k": 2}, timeout=10)
        assert r.status_code == 200 and len(r.json()["results"]) == 2
        assert r.headers["x-content-type-options"] == "nosniff" and "server" not in r.headers
        # a request in flight: headers and half the body sent, the rest after SIGTERM
        body = json.dumps({"input": ["a man is playing a guitar .", "two dogs run"]}).encode()
        conn = socket.create_connection(("127.0.0.1", port), timeout=20)
        head = (
            f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        conn.sendall(head + body[:15])
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        with pytest.raises(OSError):  # no new connections once shutdown has begun
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert proc.poll() is None  # still serving the request in flight
        conn.sendall(body[15:])
        status, payload = read_http_response(conn)
        conn.close()
        assert status == 200 and len(payload["data"]) == 2
        proc.wait(timeout=30)
        # uvicorn re-raises the signal after its graceful shutdown: killed by SIGTERM, or 0
        assert proc.returncode in (0, -signal.SIGTERM)
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_module_entry_point_bad_index_is_one_line_error(serve_bert, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "simcse.serve", str(serve_bert), "--index", str(tmp_path), "--port", "0"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("simcse: error: ") and str(tmp_path) in lines[-1]
    assert "Traceback" not in proc.stderr


def test_model_name_option_names_the_served_model(model):
    with make_client(model, model_name="mine") as c:
        ok = c.post("/v1/embeddings", json={"input": "x", "model": "mine"})
        assert ok.status_code == 200 and ok.json()["model"] == "mine"
        assert c.post("/similarity", json={"a": "x", "b": "y", "model": "simcse"}).json()["model"] == "mine"
        error = assert_error(
            c.post("/v1/embeddings", json={"input": "x", "model": "yours"}), 404, "model_not_found"
        )
        assert "'mine'" in error["message"]


def test_an_infinite_threshold_is_named_as_such(client):
    r = client.post(
        "/search", content=b'{"query": "x", "threshold": 1e309}', headers={"content-type": "application/json"}
    )
    error = assert_error(r, 422, "invalid_value")
    assert "finite number, got inf" in error["message"]
