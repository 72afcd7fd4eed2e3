"""Training-free baselines on hand-checked examples, and ``simcse eval baseline:NAME[:SOURCE]``."""

from __future__ import annotations

import numpy as np
import pytest

from simcse.baselines import pooling
from simcse.baselines.encoder import load_baseline
from simcse.core.errors import ConfigError, DataError
from tests.helpers import assert_one_line_error, run

VECTORS = "4 3\nalpha 1 0 0\nbeta 0 2 0\ngamma 0 0 3\ndelta 1 1 1\n"


@pytest.fixture
def vectors(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text(VECTORS, encoding="utf-8")
    return path


def _encode(name, vectors, sentences):
    return load_baseline(f"baseline:{name}:{vectors}").encode(sentences)


def test_the_poolings_by_hand(vectors):
    np.testing.assert_allclose(_encode("avg", vectors, ["alpha beta"])[0], [0.5, 1, 0])
    np.testing.assert_allclose(_encode("swem_max", vectors, ["alpha Beta unknown"])[0], [1, 2, 0])
    np.testing.assert_allclose(_encode("swem_concat", vectors, ["alpha beta"])[0], [0.5, 1, 0, 1, 2, 0])
    np.testing.assert_allclose(
        _encode("power_means", vectors, ["alpha beta"])[0], [0, 0, 0, 0.5, 1, 0, 1, 2, 0]
    )
    # windows of three: (alpha beta gamma) and (beta gamma delta); the max of their means
    np.testing.assert_allclose(
        _encode("swem_hier", vectors, ["alpha beta gamma delta"])[0], [1 / 3, 1, 4 / 3]
    )
    np.testing.assert_allclose(_encode("avg", vectors, ["nothing known"])[0], [0, 0, 0])


def test_sif_weights_and_its_component_removal(vectors):
    from wordfreq import word_frequency

    sentences = ["alpha beta", "gamma delta", "alpha delta"]
    weights = {w: 1e-3 / (1e-3 + word_frequency(w, "en")) for w in ("alpha", "beta", "gamma", "delta")}
    table = {"alpha": [1, 0, 0], "beta": [0, 2, 0], "gamma": [0, 0, 3], "delta": [1, 1, 1]}
    raw = np.array([sum(weights[w] * np.array(table[w], float) for w in s.split()) / 2 for s in sentences])
    u = np.linalg.svd(raw)[2][0]
    expected = raw - np.outer(raw @ u, u)
    got = _encode("sif", vectors, sentences)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got @ u, 0, atol=1e-5)  # nothing left along the common direction


def test_all_but_the_top_removes_the_mean_and_the_top_direction():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(50, 4)) + np.array([5.0, 0, 0, 0])
    matrix[:, 1] *= 10  # a dominant direction
    out = pooling.all_but_the_top(matrix, directions=1)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    top = np.linalg.svd(matrix - matrix.mean(0))[2][0]
    np.testing.assert_allclose(out @ top, 0, atol=1e-4)


def test_errors(vectors, tmp_path):
    with pytest.raises(ConfigError, match="unknown baseline 'bogus'"):
        load_baseline(f"baseline:bogus:{vectors}")
    bad = tmp_path / "bad.txt"
    bad.write_text("alpha 1 0\nbeta 1 x\n")
    with pytest.raises(DataError, match=r"bad.txt:2: expected a word and its numbers"):
        load_baseline(f"baseline:avg:{bad}")


def test_eval_computes_a_baseline_with_the_same_evaluator(vectors, tiny_bert, data_dir, capsys):
    code, out, _ = run(capsys, ["eval", f"baseline:avg:{vectors}", f"baseline:swem_max:{tiny_bert}", "--tasks",
                                "STSBenchmark", "--mode", "dev", "--quiet", "--data-dir", str(data_dir)])  # fmt: skip
    assert code == 0 and "baseline:avg:" in out and "baseline:swem_max:" in out
    code, _, err = run(
        capsys, ["eval", "baseline:nope", "--tasks", "STSBenchmark", "--data-dir", str(data_dir)]
    )
    assert_one_line_error(code, err, "unknown baseline 'nope'")


def _reference_usif(vectors, prob, sentences, n=11, m=5):
    """kawine/usif's uSIF (its usif.py), transcribed: the same steps, loops and all."""
    vocab_size = float(len(prob))
    threshold = 1 - (1 - 1 / vocab_size) ** n
    alpha = len([w for w in prob if prob[w] > threshold]) / vocab_size
    a = (1 - alpha) / (alpha * 0.5 * vocab_size)
    out = []
    for sentence in sentences:
        tokens = [t for t in sentence.split() if t in vectors]
        v_t = np.array([vectors[t] for t in tokens])
        v_t = v_t * (1.0 / np.linalg.norm(v_t, axis=0))
        v_t = np.array([(a / (0.5 * a + prob[t])) * v_t[i, :] for i, t in enumerate(tokens)])
        out.append(np.mean(v_t, axis=0))
    from sklearn.decomposition import TruncatedSVD

    svd = TruncatedSVD(n_components=m, random_state=0).fit(out)
    for i in range(m):
        lambda_i = (svd.singular_values_[i] ** 2) / (svd.singular_values_**2).sum()
        pc = svd.components_[i]
        out = [v_s - lambda_i * v_s.dot(pc.transpose()) * pc for v_s in out]
    return np.array(out)


def test_usif_matches_a_transcription_of_its_reference_code():
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(12)]
    vectors = {w: rng.normal(size=8) for w in words}
    shares = np.concatenate([[0.7, 0.1], rng.dirichlet(np.ones(10)) * 0.2])  # w0 (and only w0) is frequent
    prob = dict(zip(words, shares))
    sentences = [" ".join(rng.choice(words, size=int(rng.integers(2, 6)), replace=False)) for _ in range(9)]
    expected = _reference_usif(vectors, prob, sentences, m=3)
    a = pooling.usif_a(list(prob.values()))
    ours = np.stack([pooling.usif_sentence(np.array([vectors[t] for t in s.split()]),
                                           np.array([prob[t] for t in s.split()]), a) for s in sentences])  # fmt: skip
    ours = pooling.remove_weighted_components(ours, m=3)
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_usif_runs_on_a_vector_file(vectors):
    out = _encode("usif", vectors, ["alpha beta", "gamma delta", "alpha delta", "beta gamma", "zzz"])
    assert out.shape == (5, 3) and np.isfinite(out).all()


def test_wmd_and_wrd_by_hand(vectors):
    wmd = load_baseline(f"baseline:wmd:{vectors}")
    # one word each: the distance is the distance between the two vectors
    assert wmd.distance("alpha", "beta") == pytest.approx(np.sqrt(1 + 4))
    assert wmd.distance("alpha beta", "beta alpha") == pytest.approx(0.0)
    # half of the mass moves from beta to gamma: 0.5 * |(0,2,0) - (0,0,3)|
    assert wmd.distance("alpha beta", "alpha gamma") == pytest.approx(0.5 * np.sqrt(13))
    wrd = load_baseline(f"baseline:wrd:{vectors}")
    # orthogonal directions cost 1; the weights are the norms: (1/3, 2/3) against (1/4, 3/4), so a quarter
    # stays on alpha for free and three quarters move at cost 1
    assert wrd.distance("alpha", "beta") == pytest.approx(1.0)
    assert wrd.distance("alpha beta", "alpha gamma") == pytest.approx(0.75)
    sims = wrd.pair_similarity(["alpha", "alpha", "zzz"], ["alpha", "beta", "alpha"])
    np.testing.assert_allclose(sims, [1.0, 0.0, 0.0])  # no known word: the batch's lowest similarity
    with pytest.raises(ConfigError, match="has no sentence vector"):
        wmd.encode(["alpha"])


def test_wmd_on_sts_and_only_sts(vectors, data_dir, capsys):
    code, out, _ = run(capsys, ["eval", f"baseline:wrd:{vectors}", "--tasks", "STSBenchmark", "--mode", "dev",
                                "--quiet", "--data-dir", str(data_dir)])  # fmt: skip
    assert code == 0 and "baseline:wrd:" in out
    code, _, err = run(capsys, ["eval", f"baseline:wmd:{vectors}", "--tasks", "STSBenchmark,MR", "--quiet",
                                "--mode", "fasttest",
                                "--data-dir", str(data_dir)])  # fmt: skip
    assert_one_line_error(code, err, "scores sentence pairs and has no sentence vector")


@pytest.mark.slow
def test_the_baseline_table_for_one_encoder(tiny_bert, tiny_bert4, data_dir, tmp_path, capsys):
    import json

    from simcse.evaluation.baseline_table import rows_for
    from simcse.evaluation.suite import evaluate

    code, out, _ = run(capsys, ["baselines", str(tiny_bert), "--tasks", "STSBenchmark", "--data-dir", str(data_dir),
                                "--trained", str(tiny_bert4), "--output", str(tmp_path / "b.json")])  # fmt: skip
    assert code == 0
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    names = [r["name"] for r in rows]
    assert names == [row.name for row in rows_for(str(tiny_bert), [str(tiny_bert4)])] and len(names) == 22
    trained = rows[-1]
    assert trained["name"] == f"trained: {tiny_bert4}" and "shared_pass" not in trained
    alone = evaluate(str(tiny_bert4), "STSBenchmark", data_dir=data_dir)  # the model as simcse eval reads it
    assert trained["tasks"]["STSBenchmark"]["spearman"] == pytest.approx(
        alone["tasks"]["STSBenchmark"]["spearman"]
    )
    assert all("STSBenchmark" in r["tasks"] and r["seconds_total"] >= 0 for r in rows)
    assert "wmd (token embeddings)" in out and "encoder avg + whitening (BERT-whitening)" in out
    assert "encoder prompt + template denoising (PromptBERT)" in out
    assert "| Row | seconds |" in out


def test_a_word_with_spaces_and_a_missing_extra(tmp_path, monkeypatch):
    glove = tmp_path / "glove.txt"
    glove.write_text(". . . 1 0 0\nalpha 0 1 0\n", encoding="utf-8")  # GloVe 840B has such words
    out = load_baseline(f"baseline:avg:{glove}")
    assert out.vectors.tokens_of == {". . .": 0, "alpha": 1}
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wordfreq" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"baseline sif needs wordfreq: pip install wordfreq"):
        load_baseline(f"baseline:sif:{glove}")


def test_sif_components_are_fitted_per_task_so_a_score_does_not_depend_on_the_other_tasks(
    tiny_bert, data_dir
):
    from simcse.evaluation.suite import evaluate

    alone = evaluate(f"baseline:sif:{tiny_bert}", "STSBenchmark", mode="dev", data_dir=data_dir)
    both = evaluate(
        f"baseline:sif:{tiny_bert}", "STSBenchmark,SICKRelatedness", mode="dev", data_dir=data_dir
    )
    assert alone["tasks"]["STSBenchmark"]["spearman"] == both["tasks"]["STSBenchmark"]["spearman"]
    # and the removal is fitted on the task's sentences: the same as encode() on exactly those
    from simcse.baselines.encoder import load_baseline
    from simcse.evaluation import sts

    data = sts.load_sts_task("STSBenchmark", data_dir / "senteval" / "downstream", "dev")
    pairs = next(iter(data.subsets.values()))
    encoder = load_baseline(f"baseline:sif:{tiny_bert}")
    unique = list(dict.fromkeys(data.sentences()))
    table = dict(zip(unique, encoder.encode(unique)))
    expected = sts._correlations(sts.cosine_rows(np.stack([table[s] for s in pairs.a]),
                                                 np.stack([table[s] for s in pairs.b])), pairs.gold)[0]  # fmt: skip
    assert alone["tasks"]["STSBenchmark"]["spearman"] == pytest.approx(expected)


def test_layer_averages_read_the_named_layers(tiny_bert4):
    import torch

    from simcse.modeling.encoder import Encoder
    from simcse.modeling.pooling import masked_mean
    from simcse.modeling.sentence_encoder import pad_batch

    sentences = ["a man is playing a guitar", "two dogs run in the park"]
    got = load_baseline(f"baseline:layers=0+L:{tiny_bert4}").encode(sentences)
    enc = Encoder.load(str(tiny_bert4), "avg", packed=False)
    tokens = enc.tokenize(sentences)
    batch = pad_batch(tokens.input_ids, tokens.pad_token_id)
    with torch.no_grad():
        hs = enc.backbone(**batch, output_hidden_states=True).hidden_states
    expected = masked_mean((hs[0] + hs[4]) / 2, batch["attention_mask"]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # avg_first_last_emb is the same average
    np.testing.assert_allclose(
        Encoder.load(str(tiny_bert4), "avg_first_last_emb").encode(sentences), got, atol=1e-5
    )
    with pytest.raises(ConfigError, match="has layers 0 to 4"):
        load_baseline(f"baseline:layers=1+9:{tiny_bert4}")
    with pytest.raises(ConfigError, match="layer numbers or L"):
        load_baseline(f"baseline:layers=first+last:{tiny_bert4}")


def test_the_flow_maps_embeddings_onto_a_standard_gaussian_deterministically():
    from simcse.baselines.flow import fit_flow

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(1500, 6)) @ rng.normal(size=(6, 6)) + 3.0) ** 3 / 10  # skewed and correlated
    to_latent = fit_flow(x, seed=1, steps=300)
    z = to_latent(x)
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.15
    off_diagonal = np.corrcoef(z.T)[~np.eye(6, dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.2  # decorrelated (the input's are far from 0)
    assert np.abs(np.corrcoef(x.T)[~np.eye(6, dtype=bool)]).max() > 0.5
    np.testing.assert_allclose(
        fit_flow(x, seed=1, steps=300)(x[:5]), z[:5], atol=1e-5
    )  # the same seed, the same flow


def test_bert_flow_through_the_evaluator(tiny_bert4, data_dir, monkeypatch):
    from simcse.baselines import flow
    from simcse.evaluation.suite import evaluate

    monkeypatch.setattr(flow, "STEPS", 30)
    result = evaluate(f"baseline:flow:{tiny_bert4}", "STSBenchmark", mode="dev", data_dir=data_dir)
    assert np.isfinite(result["tasks"]["STSBenchmark"]["spearman"]) and result["model"].startswith(
        "baseline:flow:"
    )


def test_one_shared_pass_gives_the_encoders_own_poolers_and_the_layer_combinations(tiny_bert4):
    from simcse.baselines.flow import FlowEncoder
    from simcse.baselines.layer_means import FIRST_TOKEN, LayerMeans
    from simcse.modeling.encoder import Encoder

    sentences = ["a man is playing a guitar", "two dogs run in the park", "a woman slices an onion"]
    specs = [FIRST_TOKEN, "L", "0+L", "1+L", "L-1+L"]
    means = LayerMeans(str(tiny_bert4), specs, batch_size=2, precision="fp32")
    assert means.layers == (0, 1, 3, 4) and "fp32" in means.precision_line  # the first token needs no layer
    for pooler, spec in (("cls_before_pooler", FIRST_TOKEN), ("avg", "L"), ("avg_first_last", "1+L"),
                         ("avg_first_last_emb", "0+L"), ("avg_top2", "L-1+L")):  # fmt: skip
        own = Encoder.load(str(tiny_bert4), pooler).encode(sentences)
        np.testing.assert_allclose(means.view(spec, "x", pooler).encode(sentences), own, atol=1e-5)
    for spec in ("0+L", "1+L", "L-1+L"):
        alone = load_baseline(f"baseline:layers={spec}:{tiny_bert4}").encode(sentences)
        np.testing.assert_allclose(means.view(spec, "x", "y").encode(sentences[::-1]), alone[::-1], atol=1e-5)
    flow_input = FlowEncoder(str(tiny_bert4)).raw(sentences)
    np.testing.assert_allclose(means.view("L-1+L", "x", "flow").raw(sentences), flow_input, atol=1e-5)
    assert len(means.index) == 3 and means.means.shape == (4, 3, Encoder.load(str(tiny_bert4)).dim)
    means.view("L", "x", "avg").encode(sentences + ["one more sentence"])  # only the new one is encoded
    assert len(means.index) == 4 and means.means.shape[1] == 4
    with pytest.raises(ValueError, match="were not computed"):
        means.view("2+L", "x", "y")


@pytest.mark.slow
def test_the_table_reads_the_shared_pass_as_the_rows_own_encoders_would(
    tiny_bert4, data_dir, tmp_path, capsys
):
    import json

    from simcse.evaluation.suite import evaluate

    code, out, _ = run(capsys, ["baselines", str(tiny_bert4), "--tasks", "STSBenchmark", "--data-dir", str(data_dir),
                                "--precision", "fp32", "--output", str(tmp_path / "b.json")])  # fmt: skip
    assert code == 0 and "| encoder avg * |" in out and "reads the one forward pass" in out
    rows = {r["name"]: r for r in json.loads((tmp_path / "b.json").read_text())["rows"]}
    alone = {
        "encoder cls_before_pooler": (str(tiny_bert4), "cls_before_pooler", None),
        "encoder avg_first_last": (str(tiny_bert4), "avg_first_last", None),
        "encoder avg + whitening (BERT-whitening)": (str(tiny_bert4), "avg", "self"),
        "layers first + last + whitening (WhiteningBERT)": (
            f"baseline:layers=1+L:{tiny_bert4}",
            None,
            "self",
        ),
    }
    for name, (model, pooler, whiten) in alone.items():
        expected = evaluate(
            model, "STSBenchmark", data_dir=data_dir, pooler=pooler, whiten=whiten, precision="fp32"
        )
        got = rows[name]
        assert got["shared_pass"] and "fp32" in got["precision"]
        assert got["tasks"]["STSBenchmark"]["spearman"] == pytest.approx(
            expected["tasks"]["STSBenchmark"]["spearman"], abs=1e-3
        ), name
        assert got["model"] == expected["model"] and got["pooler"] == expected["pooler"]
    assert "shared_pass" not in rows["encoder prompt (PromptBERT's template)"]


def test_a_baseline_is_a_model_for_the_api_too(vectors, tiny_bert4, tmp_path):
    """``SimCSE("baseline:...")`` and ``SimCSE(<a baseline encoder>)`` encode, compare and search like any
    model (unit vectors by default); the ones that cannot give fixed vectors say so in one line."""
    from simcse.core.errors import SimCSEError
    from simcse.use.api import SimCSE

    model = SimCSE(f"baseline:avg:{vectors}")
    assert model.dim == 3 and model.encoder.describe()["dim"] == 3
    np.testing.assert_allclose(
        model.encode("alpha beta").numpy(), np.array([0.5, 1, 0]) / np.sqrt(1.25), atol=1e-6
    )
    assert model.similarity("alpha", "alpha gamma") == pytest.approx(1 / np.sqrt(1 + 9))
    model.build_index(["alpha", "beta", "gamma delta"], index="flat")
    assert model.search("gamma", top_k=1)[0][0] == "gamma delta"
    layers = SimCSE(load_baseline(f"baseline:layers=1+4:{tiny_bert4}"))
    raw = layers.encoder.encode(["a man plays"], normalize=False)
    np.testing.assert_allclose(layers.encode(["a man plays"]).numpy(), raw / np.linalg.norm(raw), atol=1e-6)
    assert layers.max_length == min(128, layers.encoder.encoder.max_length)
    assert layers.encoder.describe()["dim"] == raw.shape[1]
    with pytest.raises(SimCSEError, match="scores pairs of sentences and has no sentence vectors"):
        SimCSE(f"baseline:wmd:{vectors}")
    sif = SimCSE(f"baseline:sif:{vectors}")
    assert sif.encode(["alpha beta", "gamma", "delta alpha"]).shape == (3, 3)  # one set: fitted on it
    for call in (lambda: sif.build_index(["alpha", "beta"]), lambda: sif.similarity("alpha", "beta")):
        with pytest.raises(SimCSEError, match="fits its post-processing on the sentences encoded together"):
            call()
    with pytest.raises(ConfigError, match="--pooler does not apply"):
        SimCSE(f"baseline:avg:{vectors}", pooler="cls")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("alpha\nbeta\n", encoding="utf-8")
    from simcse.use.corpus import encode_corpus

    with pytest.raises(SimCSEError, match="encoding a corpus in blocks"):
        encode_corpus(f"baseline:sif:{vectors}", corpus, tmp_path / "out.npy")
    with pytest.raises(SimCSEError, match="encoding a corpus in blocks: .* scores pairs of sentences"):
        encode_corpus(f"baseline:wmd:{vectors}", corpus, tmp_path / "out.npy")
    assert not (tmp_path / "out.npy").exists()
