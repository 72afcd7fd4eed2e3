"""Two models served side by side (``simcse serve MODEL --compare OTHER``): each request is answered by the
model it names (the first by default), each model searches its own index of the same sentences, and
``serve`` encodes that second index at start."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from simcse.core.errors import SimCSEError  # noqa: E402
from simcse.modeling.encoder import Encoder  # noqa: E402
from simcse.serve import ServeSettings, add_arguments, create_app, run  # noqa: E402
from simcse.use.api import SimCSE  # noqa: E402
from tests.helpers import SENTENCES, make_tiny_bert  # noqa: E402


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertModel

    path = make_tiny_bert(tmp_path_factory.mktemp("compare-bert"), dropout=0.0)
    config = BertConfig.from_pretrained(str(path))
    config.initializer_range = 0.5  # clearly different vectors for different texts
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def pair(bert):
    """The same backbone under two poolers: two encoders that rank differently."""
    first = SimCSE(Encoder.load(bert, "avg"), device="cpu").build_index(SENTENCES, index="flat")
    second = SimCSE(Encoder.load(bert, "cls_before_pooler"), device="cpu").build_index(
        SENTENCES, index="flat"
    )
    return first, second


@pytest.fixture(scope="module")
def client(pair):
    app = create_app(pair[0], ServeSettings(model_name="base", compare_name="trained"), pair[1])
    with TestClient(app) as c:
        yield c


def test_health_lists_both_models(client, pair):
    h = client.get("/health").json()
    assert h["model"] == "base" and h["index_size"] == len(SENTENCES)
    assert h["models"] == [{"name": "base", "dim": pair[0].dim, "index_size": len(SENTENCES)},
                           {"name": "trained", "dim": pair[1].dim, "index_size": len(SENTENCES)}]  # fmt: skip


def test_each_request_is_answered_by_the_model_it_names(client, pair):
    first, second = pair
    texts = SENTENCES[:3]
    for name, model in (("base", first), ("trained", second), ("simcse", first), (None, first)):
        body = {"input": texts} if name is None else {"input": texts, "model": name}
        r = client.post("/v1/embeddings", json=body).json()
        assert r["model"] == ("base" if model is first else "trained")
        assert np.allclose([d["embedding"] for d in r["data"]], model.encode(texts, normalize_to_unit=True),
                           atol=1e-5)  # fmt: skip
    a, b = SENTENCES[:2], SENTENCES[2:5]
    for name, model in (("base", first), ("trained", second)):
        scores = client.post("/similarity", json={"a": a, "b": b, "model": name}).json()["scores"]
        assert np.allclose(scores, model.similarity(a, b), atol=1e-5)
    assert not np.allclose(first.similarity(a, b), second.similarity(a, b), atol=1e-3)


def test_each_model_searches_its_own_index(client, pair):
    query = "a man is playing music"
    rankings = {}
    for name, model in (("base", pair[0]), ("trained", pair[1])):
        hits = client.post("/search", json={"query": query, "top_k": 5, "model": name}).json()["results"]
        expected = model.search(query, top_k=5, threshold=None)
        assert [h["sentence"] for h in hits] == [s for s, _ in expected]
        assert np.allclose([h["score"] for h in hits], [s for _, s in expected], atol=1e-5)
        rankings[name] = [h["sentence"] for h in hits]
    assert rankings["base"] != rankings["trained"]


def test_an_unknown_model_names_both_served_ones(client):
    r = client.post("/v1/embeddings", json={"input": "x", "model": "other"})
    assert r.status_code == 404
    message = r.json()["error"]["message"]
    assert "'base'" in message and "'trained'" in message


def test_two_models_of_one_name_are_refused(pair):
    with pytest.raises(SimCSEError, match="both served models are named 'same'"):
        create_app(pair[0], ServeSettings(model_name="same", compare_name="same"), pair[1])
    with pytest.raises(SimCSEError, match="--compare-name"):
        create_app(pair[0], ServeSettings(model_name="x", compare_name="simcse"), pair[1])


def test_serve_encodes_the_indexed_sentences_with_the_compared_model(
    bert, pair, tmp_path, monkeypatch, capsys
):
    import uvicorn

    index = pair[0].save_index(tmp_path / "index")
    seen = {}

    def fake_run(self, sockets=None):
        with TestClient(self.config.app, base_url="http://127.0.0.1") as c:  # a loopback Host header
            seen["health"] = c.get("/health").json()
            seen["hits"] = c.post("/search", json={"query": SENTENCES[0], "top_k": 1, "model": "b"}).json()

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(bert), "--pooler", "avg", "--index", str(index), "--port", "0",
                              "--model-name", "a", "--compare", str(bert), "--compare-pooler",
                              "cls_before_pooler", "--compare-name", "b"])  # fmt: skip
    assert run(args) == 0
    assert [m["name"] for m in seen["health"]["models"]] == ["a", "b"]
    assert seen["health"]["models"][1]["index_size"] == len(SENTENCES)
    assert seen["hits"]["model"] == "b" and seen["hits"]["results"][0]["sentence"] == SENTENCES[0]
    err = capsys.readouterr().err
    assert f"encoding the {len(SENTENCES)} indexed sentences" in err and "beside b" in err
