"""The trainer end to end on tiny models: objectives, precisions, MLM, architectures, selection, faults."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from simcse.core.errors import ConfigError, SimCSEError
from simcse.training.loop import TrainingError, train
from simcse.training.setup import build_model, resolve
from tests.helpers import SENTENCES, make_tiny_bert, train_config


@pytest.fixture
def txt(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("\n".join(SENTENCES) + "\n\n", encoding="utf-8")
    return path


@pytest.fixture
def triples(tmp_path):
    rows = ["sent0,sent1,hard_neg"] + [
        f'"{a}","{b}","{c}"' for a, b, c in zip(SENTENCES, SENTENCES[1:], SENTENCES[2:])
    ]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_sup_hard_negatives_with_mlm_in_every_precision(tiny_bert_mlm, triples, tmp_path, precision):
    out = tmp_path / "run"
    result = train(
        train_config(tiny_bert_mlm, triples, out, do_mlm=True, hard_negative_weight=2.0, precision=precision)
    )
    assert result.global_step == 4
    records = [r for r in _records(out) if r["kind"] == "train"]
    assert len(records) == 4 and all(np.isfinite(r["loss"]) and "mlm_loss" in r for r in records)
    meta = json.loads((out / "simcse.json").read_text())
    assert meta["objective"] == "sup" and meta["views"] == 3 and meta["hard_negative_weight"] == 2.0
    assert meta["training_config"]["precision"] == precision
    assert (out / "README.md").read_text().startswith("---")


def test_the_original_mlm_head_is_fresh_for_bert_and_pretrained_for_roberta():
    from transformers import BertConfig, BertForMaskedLM, RobertaConfig, RobertaForMaskedLM

    from simcse.training.heads import resolved_mlm_head

    small = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
             "vocab_size": 50}  # fmt: skip
    assert resolved_mlm_head(BertForMaskedLM(BertConfig(**small)), "original") == "fresh"
    assert resolved_mlm_head(RobertaForMaskedLM(RobertaConfig(**small)), "original") == "untied"
    assert resolved_mlm_head(BertForMaskedLM(BertConfig(**small)), "tied") == "tied"


@pytest.mark.parametrize("kind", ["original", "untied", "fresh", "tied"])
def test_mlm_head_kinds(tiny_bert_mlm, tiny_bert, txt, tmp_path, kind):
    from safetensors.torch import load_file

    model, notes = build_model(train_config(tiny_bert_mlm, txt, tmp_path / "o", do_mlm=True, mlm_head=kind))
    kind = "fresh" if kind == "original" else kind  # a BERT checkpoint: the original's head loaded nothing
    saved = load_file(str(tiny_bert_mlm / "model.safetensors"))
    head = model.mlm_head.predictions
    embeddings = model.encoder.backbone.embeddings.word_embeddings.weight
    fresh_note = "the MLM head starts freshly initialised"
    assert [n[: len(fresh_note)] for n in notes] == ([fresh_note] if kind == "fresh" else [])
    same = torch.equal(head.transform.dense.weight, saved["cls.predictions.transform.dense.weight"])
    assert same is (kind != "fresh")
    assert (head.decoder.weight is embeddings) is (kind == "tied")
    if kind == "fresh":
        assert not torch.equal(head.decoder.weight, embeddings)
        assert head.transform.dense.weight.std().item() == pytest.approx(0.02, rel=0.2)
    else:
        assert torch.equal(head.decoder.weight, embeddings)  # the pretrained (tied) values
    assert head.decoder.bias is None or head.bias is head.decoder.bias
    # untied: a step on the head leaves the input embeddings alone
    params = [p for p in model.mlm_head.parameters()]
    before = embeddings.detach().clone()
    loss = model.mlm_head(torch.randn(3, embeddings.shape[1])).logsumexp(-1).sum()
    loss.backward()
    torch.optim.SGD(params, lr=1.0).step()
    assert torch.equal(embeddings, before) is (kind != "tied")
    _, notes = build_model(train_config(tiny_bert, txt, tmp_path / "o", do_mlm=True, mlm_head=kind))
    no_head = "the checkpoint has no MLM head; it starts freshly initialised"
    assert len(notes) == 1 and notes[0].startswith(fresh_note if kind == "fresh" else no_head)


def test_an_untied_mlm_head_is_restored_on_resume(tiny_bert_mlm, txt, tmp_path):
    """Resuming from step 2 must restore the untied head too, or steps 3-4 would train another one."""
    from safetensors.torch import load_file

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    for out in (whole, resumed):
        train(
            train_config(tiny_bert_mlm, txt, out, do_mlm=True, max_steps=4, save_steps=2, learning_rate=1e-2)
        )
    meta = json.loads((resumed / "simcse.json").read_text())
    del meta["finished"]  # as if killed while writing the final model
    (resumed / "simcse.json").write_text(json.dumps(meta))
    (resumed / "model.safetensors").unlink()
    train(train_config(tiny_bert_mlm, txt, resumed, do_mlm=True, max_steps=4, save_steps=2, learning_rate=1e-2),
          resume=True)  # fmt: skip
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_gradcache_training_runs_and_matches_plain_training_without_dropout(tmp_path, txt):
    model = make_tiny_bert(tmp_path / "m", dropout=0.0)
    plain = train(train_config(model, txt, tmp_path / "a", batch_size=8, max_steps=3, seed=1))
    cached = train(
        train_config(model, txt, tmp_path / "b", batch_size=8, max_steps=3, seed=1, gradcache_chunk_size=3)
    )
    from safetensors.torch import load_file

    a, b = (
        load_file(str(plain.output_dir / "model.safetensors")),
        load_file(str(cached.output_dir / "model.safetensors")),
    )
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


@pytest.mark.parametrize("kind", ["distilbert", "mpnet"])
def test_other_architectures_train_and_load_in_sentence_transformers(kind, tmp_path, txt):
    st = pytest.importorskip("sentence_transformers")
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel, MPNetConfig, MPNetModel

    bert = make_tiny_bert(tmp_path / "bert")
    path = tmp_path / kind
    torch.manual_seed(0)
    if kind == "distilbert":
        model = DistilBertModel(DistilBertConfig(vocab_size=256, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                 max_position_embeddings=64))  # fmt: skip
    else:
        model = MPNetModel(MPNetConfig(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=64, max_position_embeddings=66))  # fmt: skip
    model.save_pretrained(str(path))
    AutoTokenizer.from_pretrained(str(bert)).save_pretrained(str(path))
    out = tmp_path / "run"
    train(train_config(path, txt, out, pooler="avg"))
    from simcse.modeling.encoder import Encoder

    enc = Encoder.load(out)
    assert not enc.packed
    theirs = st.SentenceTransformer(str(out), device="cpu").encode(SENTENCES)
    assert np.allclose(enc.encode(SENTENCES), theirs, atol=1e-5)


def test_dev_selection_final_eval_and_outputs(tiny_bert, txt, tmp_path, data_dir):
    out = tmp_path / "run"
    result = train(train_config(tiny_bert, txt, out, dev_eval=True, eval_steps=2, max_steps=4, final_eval="sts",
                           data_dir=str(data_dir), save_steps=2, learning_rate=1e-3))  # fmt: skip
    evals = [r for r in _records(out) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 2, 4]  # before training, then every eval_steps
    best = max(evals[1:], key=lambda r: r["stsb_spearman"])
    assert result.best_step == best["step"] and result.best_metric == pytest.approx(best["stsb_spearman"])
    meta = json.loads((out / "simcse.json").read_text())
    assert meta["best_step"] == best["step"] and meta["test"]["tasks"]["STS12"]["spearman"] is not None
    assert json.loads((out / "results.json").read_text())["tasks"].keys() >= {"STS12", "SICKRelatedness"}
    assert "| this model |" in (out / "README.md").read_text()
    assert (out / "checkpoints" / "best" / "model.safetensors").exists()


def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(tiny_bert, txt, tmp_path, monkeypatch):
    from simcse.training import losses

    original = losses.ContrastiveLoss.forward
    calls = {"n": 0}

    def flaky(self, views):
        calls["n"] += 1
        loss = original(self, views)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(losses.ContrastiveLoss, "forward", flaky)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match="at step 3"):
        train(train_config(tiny_bert, txt, out, save_steps=2))
    assert (out / "checkpoints" / "step-00000002" / "manifest.json").exists()


def test_max_seq_len_beyond_the_model_is_refused_before_writing(tiny_bert, txt, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="max_seq_len 100"):
        train(train_config(tiny_bert, txt, out, max_seq_len=100))
    assert not out.exists()


def test_train_file_is_looked_up_in_the_data_dir(tiny_bert, tmp_path):
    data = tmp_path / "data"
    (data / "wiki").mkdir(parents=True)
    (data / "wiki" / "w.txt").write_text("\n".join(SENTENCES), encoding="utf-8")
    result = train(train_config(tiny_bert, "wiki/w.txt", tmp_path / "run", data_dir=str(data), max_steps=1))
    assert result.global_step == 1


def test_metrics_reach_tensorboard_when_installed(tiny_bert, txt, tmp_path):
    pytest.importorskip(
        "tensorboard", reason="TensorBoard logging is used only when tensorboard is installed"
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(train_config(tiny_bert, txt, out, tensorboard=True, max_steps=3))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/sentences_per_s"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]


def test_roberta_trains_packed_and_loads_in_sentence_transformers(tmp_path, txt):
    st = pytest.importorskip("sentence_transformers")
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    from simcse.modeling.encoder import Encoder

    path = tmp_path / "roberta"
    path.mkdir()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 5, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # fmt: skip
    bpe.save_model(str(path))
    tokenizer = RobertaTokenizerFast(
        vocab_file=str(path / "vocab.json"), merges_file=str(path / "merges.txt")
    )
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=66, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2)  # fmt: skip
    RobertaModel(config).save_pretrained(str(path))
    out = tmp_path / "run"
    train(train_config(path, txt, out, pooler="cls", mlp_only_train=True))
    enc = Encoder.load(out)
    assert enc.packed and enc.pooler == "cls_before_pooler"
    theirs = st.SentenceTransformer(str(out), device="cpu").encode(SENTENCES)
    assert np.allclose(enc.encode(SENTENCES), theirs, atol=1e-5)
    packed_off = Encoder.load(out, packed=False)
    assert np.allclose(packed_off.encode(SENTENCES), theirs, atol=1e-5)


def test_compile_pads_to_one_shape_and_traces_one_graph(tiny_bert, txt, tmp_path):
    from torch._dynamo.utils import counters

    counters.clear()
    # aot_eager: the whole torch.compile path (dynamo capture, AOT autograd) without C++ codegen time
    result = train(train_config(tiny_bert, txt, tmp_path / "run", compile=True, compile_backend="aot_eager",
                           max_steps=5, batch_size=4))  # fmt: skip
    assert result.global_step == 5
    assert counters["stats"]["unique_graphs"] == 1  # every batch padded to max_seq_len: no recompiles
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]  # fmt: skip
    assert losses and all(np.isfinite(losses))


def test_compile_rejects_packed_and_unknown_backends(tiny_bert, txt, tmp_path):
    with pytest.raises(ConfigError, match="packed"):
        train_config(tiny_bert, txt, tmp_path / "a", compile=True, packed="on").validate()
    config = train_config(tiny_bert, txt, tmp_path / "b", compile=True, compile_backend="nope").validate()
    with pytest.raises(ConfigError, match="not a torch.compile backend"):  # the environment's check
        resolve(config)
    with pytest.raises(ConfigError, match="not a torch.compile backend"):
        train(config)
    assert not (tmp_path / "b").exists()


def test_sdpa_attention_is_selected_by_default(tiny_bert, txt, tmp_path):
    model, _ = build_model(train_config(tiny_bert, txt, tmp_path / "run", packed="off"))
    assert model.encoder.backbone.config._attn_implementation == "sdpa"
    model, _ = build_model(
        train_config(tiny_bert, txt, tmp_path / "run", packed="off", attn_implementation="eager")
    )
    assert model.encoder.backbone.config._attn_implementation == "eager"


def test_hf_adamw_is_the_transformers_4_update():
    from simcse.training.hf_adamw import HFAdamW

    lr, eps, b1, b2 = 0.1, 1e-3, 0.9, 0.999
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    g = torch.tensor([0.01, -0.002, 0.0005])
    optimizer = HFAdamW([p], lr=lr, betas=(b1, b2), eps=eps)
    p.grad = g.clone()
    optimizer.step()
    # step 1: m = (1-b1) g, v = (1-b2) g^2, update lr*sqrt(1-b2)/(1-b1) * m / (sqrt(v) + eps)
    expected = torch.tensor([1.0, -2.0, 0.5]) - lr * (1 - b2) ** 0.5 * g / ((1 - b2) ** 0.5 * g.abs() + eps)
    assert torch.allclose(p.detach(), expected, atol=1e-7)
    # with eps = 0 the two AdamW forms are the same update
    a, b = (torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5])) for _ in range(2))
    hf, ref = HFAdamW([a], lr=lr, eps=0.0), torch.optim.AdamW([b], lr=lr, eps=0.0, weight_decay=0.0)
    for grad in (g, -2 * g, 0.5 * g):
        a.grad, b.grad = grad.clone(), grad.clone()
        hf.step()
        ref.step()
    assert torch.allclose(a, b, atol=1e-6)
    # with eps > 0, torch's AdamW takes a larger first step where the gradient is as small as eps
    torch_step = torch.optim.AdamW(
        [c := torch.nn.Parameter(torch.tensor([0.0]))], lr=lr, eps=eps, weight_decay=0.0
    )
    hf_step = HFAdamW([d := torch.nn.Parameter(torch.tensor([0.0]))], lr=lr, eps=eps)
    c.grad, d.grad = torch.tensor([1e-3]), torch.tensor([1e-3])
    torch_step.step()
    hf_step.step()
    assert abs(c.item()) > abs(d.item()) * 5


def _transformers_4_adamw(params, grads_per_step, lr, betas, eps, weight_decay):
    """transformers 4.x ``AdamW.step`` (correct_bias=True), transcribed for one parameter list."""
    state = [{"step": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)} for p in params]
    for grads in grads_per_step:
        for p, g, s in zip(params, grads, state):
            s["step"] += 1
            s["m"].mul_(betas[0]).add_(g, alpha=1.0 - betas[0])
            s["v"].mul_(betas[1]).addcmul_(g, g, value=1.0 - betas[1])
            denom = s["v"].sqrt().add_(eps)
            step_size = lr * math.sqrt(1.0 - betas[1] ** s["step"]) / (1.0 - betas[0] ** s["step"])
            p.addcdiv_(s["m"], denom, value=-step_size)
            if weight_decay > 0.0:
                p.add_(p, alpha=-lr * weight_decay)
    return params


@pytest.mark.parametrize("fused", [True, False])
def test_hf_adamw_follows_transformers_4_over_steps_and_resumes(fused):
    from simcse.training.hf_adamw import HFAdamW

    torch.manual_seed(0)
    start = [torch.randn(4, 3), torch.randn(3)]
    grads = [[1e-4 * torch.randn(4, 3), 1e-3 * torch.randn(3)] for _ in range(6)]
    lr, betas, eps, wd = 1e-2, (0.9, 0.999), 1e-6, 0.1
    expected = _transformers_4_adamw([t.clone() for t in start], grads, lr, betas, eps, wd)
    params = [torch.nn.Parameter(t.clone()) for t in start]
    optimizer = HFAdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=wd, fused=fused)
    for step, g in enumerate(grads):
        if step == 3:  # an exact resume: a new optimizer from the saved state
            saved = optimizer.state_dict()
            optimizer = HFAdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=wd, fused=fused)
            optimizer.load_state_dict(saved)
        for p, grad in zip(params, g):
            p.grad = grad.clone()
        optimizer.step()
    for ours, ref in zip(params, expected):
        torch.testing.assert_close(ours.detach(), ref, rtol=1e-5, atol=1e-7)
    assert optimizer.param_groups[0]["hf_step"] == 6


def test_hf_adamw_step_skipped_by_the_fp16_scaler_counts_for_nothing():
    from simcse.training.hf_adamw import HFAdamW

    start, grad = torch.tensor([1.0, -2.0]), torch.tensor([1e-3, -1e-4])
    p, q = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    skipping = HFAdamW([p], lr=1e-2, eps=1e-6, weight_decay=0.1, fused=True)
    plain = HFAdamW([q], lr=1e-2, eps=1e-6, weight_decay=0.1, fused=True)
    p.grad, q.grad = grad.clone(), grad.clone()
    skipping.grad_scale, skipping.found_inf = torch.ones(()), torch.ones(())  # what GradScaler sets
    skipping.step()
    assert torch.equal(p.detach(), start) and skipping.param_groups[0]["hf_step"] == 0
    skipping.found_inf = torch.zeros(())
    skipping.step()
    plain.step()
    torch.testing.assert_close(p.detach(), q.detach())
    assert skipping.param_groups[0]["hf_step"] == 1


def test_the_original_optimizer_and_gradient_scale_are_the_defaults(tiny_bert, txt, tmp_path):
    from simcse.training.hf_adamw import HFAdamW
    from simcse.training.setup import build_optimizer

    config = train_config(tiny_bert, txt, tmp_path / "run")
    assert (config.optimizer, config.ddp_gradient) == ("adamw_hf", "original")
    model, _ = build_model(config)
    assert isinstance(build_optimizer(config, model, torch.device("cpu")), HFAdamW)
    torch_config = train_config(tiny_bert, txt, tmp_path / "run", optimizer="adamw")
    assert type(build_optimizer(torch_config, model, torch.device("cpu"))) is torch.optim.AdamW


@pytest.mark.parametrize("eval_at_end", [False, True])
def test_the_last_step_is_a_dev_candidate_only_with_eval_at_end(
    tiny_bert, txt, tmp_path, data_dir, eval_at_end
):
    out = tmp_path / "run"
    config = train_config(tiny_bert, txt, out, max_steps=5, eval_steps=2, dev_eval=True, data_dir=str(data_dir),
                          eval_at_end=eval_at_end, optimizer="adamw_hf")  # fmt: skip
    train(config)
    steps = [
        r["step"]
        for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        if r.get("kind") == "eval" and r["step"] > 0  # step 0: the model before training
    ]
    assert steps == ([2, 4, 5] if eval_at_end else [2, 4])


def _own_dev(path, rows):
    path.write_text("sentence1,sentence2,score\n" + "\n".join(f'"{a}","{b}",{s}' for a, b, s in rows) + "\n",
                    encoding="utf-8")  # fmt: skip
    return path


def test_your_own_dev_file_picks_the_checkpoint_and_is_named_everywhere(tiny_bert, txt, tmp_path, capsys):
    rows = [(SENTENCES[i], SENTENCES[(i * 3 + 1) % len(SENTENCES)], (i * 7) % 11 / 2) for i in range(10)]
    dev = _own_dev(tmp_path / "mydev.csv", rows)
    out = tmp_path / "run"
    train(train_config(tiny_bert, txt, out, max_steps=4, eval_steps=2, dev_eval=True, dev_file=str(dev)))
    err = capsys.readouterr().err
    assert "checkpoint selection on dev set mydev: 10 pairs, scores 0 to 5, Spearman (dev_spearman)" in err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals and all(set(r) >= {"dev_spearman"} and "stsb_spearman" not in r for r in evals)
    meta = json.loads((out / "simcse.json").read_text())
    assert meta["best_metric"] == "dev_spearman" and set(meta["dev"]) == {"dev_spearman"}
    card = (out / "README.md").read_text()
    assert "the best model by dev_spearman" in card and f"`{dev}`" in card
    # the same scores through the STS reader as a tsv and as an STS-style directory
    from simcse.evaluation.sts import load_dev_file

    tsv = tmp_path / "mydev.tsv"
    tsv.write_text("\n".join(f"{a}\t{b}\t{s}" for a, b, s in rows) + "\n", encoding="utf-8")
    folder = tmp_path / "sts"
    folder.mkdir()
    (folder / "STS.input.x.txt").write_text(
        "\n".join(f"{a}\t{b}" for a, b, _ in rows) + "\n", encoding="utf-8"
    )
    (folder / "STS.gs.x.txt").write_text("\n".join(str(s) for *_, s in rows) + "\n", encoding="utf-8")
    expected = load_dev_file(dev).subsets["dev"]
    for other in (load_dev_file(tsv).subsets["dev"], load_dev_file(folder).subsets["x"]):
        assert other.a == expected.a and other.b == expected.b and list(other.gold) == list(expected.gold)


@pytest.mark.parametrize(
    "content,message",
    [
        ("a,b,1\nc,d\n", "mydev.csv:2: expected 3 columns"),
        ("a,b,1\nc,d,high\n", "mydev.csv:2: gold score 'high' is not a number"),
        ("sentence1,sentence2,score\na,b,1\n", "1 scored pair(s)"),
    ],
)
def test_a_bad_dev_file_stops_before_anything_is_written(tiny_bert, txt, tmp_path, content, message):
    dev = tmp_path / "mydev.csv"
    dev.write_text(content, encoding="utf-8")
    out = tmp_path / "run"
    with pytest.raises(SimCSEError) as info:
        train(train_config(tiny_bert, txt, out, dev_eval=True, dev_file=str(dev)))
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()


def test_dev_file_and_the_metric_must_agree(tiny_bert, txt, tmp_path):
    with pytest.raises(ConfigError, match="with dev_file use dev_spearman"):
        train(train_config(tiny_bert, txt, tmp_path / "a", dev_file="x.csv", metric_for_best_model="avg_sts"))
    with pytest.raises(ConfigError, match="dev_spearman needs dev_file"):
        train(train_config(tiny_bert, txt, tmp_path / "b", metric_for_best_model="dev_spearman"))


def test_bf16_dev_evaluations_see_every_update_of_a_fused_optimiser(tiny_bert4, txt, tmp_path):
    """bf16 dev evaluations on a CPU encode with a bf16 copy of the weights; torch's fused AdamW updates in
    place without bumping the tensors' versions, so without the trainer's hook every evaluation after the
    first would score the copy made before training."""
    rows = [(SENTENCES[i], SENTENCES[(i * 3 + 1) % len(SENTENCES)], (i * 7) % 11 / 2) for i in range(10)]
    dev = _own_dev(tmp_path / "mydev.csv", rows)
    out = tmp_path / "run"
    config = train_config(tiny_bert4, txt, out, max_steps=3, eval_steps=1, dev_eval=True, dev_file=str(dev),
                          eval_before_training=True, precision="bf16", learning_rate=5e-3,
                          pooler="avg")  # fmt: skip
    result = train(config)
    evals = {r["step"]: r["dev_spearman"] for r in _records(out) if r["kind"] == "eval"}
    assert sorted(evals) == [0, 1, 2, 3] and evals[0] == result.dev_before["dev_spearman"]
    assert any(evals[step] != evals[0] for step in (1, 2, 3))  # before the fix: all four were step 0's
