"""One table of the related work's training-free baselines for a given encoder, computed by the same
evaluator as everything else (``simcse baselines [ENCODER]``): the word-vector baselines over the encoder's
input token embeddings, the encoder's own pooled embeddings (with and without whitening), PromptBERT's
template [MASK] state (with and without template denoising), and optionally trained models; each row with
its runtime.

The rows that pool the encoder's hidden layers (its own poolers, whitening, BERT-flow, WhiteningBERT's layer
combinations) read one shared forward pass (:mod:`simcse.baselines.layer_means`): the same vectors their own
encoders give, computed once. The first of them carries the pass's time; the runtime table marks them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

from simcse.baselines.encoder import BASELINES, PAIR_BASELINES
from simcse.baselines.layer_means import FIRST_TOKEN, LayerMeans
from simcse.core.errors import SimCSEError
from simcse.evaluation import sts
from simcse.evaluation.suite import evaluate, resolve_tasks

OWN_POOLERS = ("cls_before_pooler", "avg", "avg_first_last", "avg_first_last_emb")
LAYER_COMBOS = {"0+L": "embeddings + last", "1+L": "first + last", "L-1+L": "last two"}  # WhiteningBERT's
POOLER_LAYERS = {
    "cls_before_pooler": FIRST_TOKEN,
    "avg": "L",
    "avg_first_last": "1+L",
    "avg_first_last_emb": "0+L",
}


@dataclass(frozen=True)
class Row:
    """One row of the baseline table: its label, the model spec to evaluate and the options it is evaluated
    with (``layers``: read from the shared forward pass instead of loading ``model``)."""

    name: str
    model: str | None
    pooler: str | None = None
    whiten: str | None = None
    pairs_only: bool = False  # WMD / WRD: STS tasks only
    prompt_denoise: str | None = None  # pooler prompt
    layers: str | None = None  # read from the shared pass: FIRST_TOKEN or the averaged layers, e.g. "1+L"
    flow: bool = False  # BERT-flow fitted per task on the shared pass's vectors


def rows_for(encoder: str | None, trained: list[str]) -> list[Row]:
    """The table's rows for ``encoder`` (None: the embedded model), in order: the word-vector baselines, the
    pair baselines, the encoder's own poolers, BERT-whitening, PromptBERT, BERT-flow, WhiteningBERT's layer
    combinations, then each ``trained`` model."""
    source = f":{encoder}" if encoder else ""
    rows = [Row(f"{name} (token embeddings)", f"baseline:{name}{source}") for name in BASELINES]
    rows += [
        Row(f"{name} (token embeddings)", f"baseline:{name}{source}", pairs_only=True)
        for name in PAIR_BASELINES
    ]
    rows += [
        Row(f"encoder {pooler}", encoder, pooler=pooler, layers=POOLER_LAYERS[pooler])
        for pooler in OWN_POOLERS
    ]
    rows += [
        Row("encoder avg + whitening (BERT-whitening)", encoder, pooler="avg", whiten="self", layers="L")
    ]
    rows += [
        Row("encoder prompt (PromptBERT's template)", encoder, pooler="prompt"),
        Row(
            "encoder prompt + template denoising (PromptBERT)",
            encoder,
            pooler="prompt",
            prompt_denoise="always",
        ),
    ]
    rows += [
        Row("encoder last-two avg + flow (BERT-flow)", f"baseline:flow{source}", layers="L-1+L", flow=True)
    ]
    for combo, label in LAYER_COMBOS.items():
        rows += [
            Row(
                f"layers {label} + whitening (WhiteningBERT)",
                f"baseline:layers={combo}{source}",
                whiten="self",
                layers=combo,
            )
        ]
    rows += [Row(f"trained: {path}", path) for path in trained]
    return rows


class _SharedPass:
    """The views of one :class:`LayerMeans` pass, made on first use (so a table without such rows loads
    nothing)."""

    def __init__(self, encoder: str | None, batch_size: int, precision: str):
        self.encoder, self.batch_size, self.precision = encoder, batch_size, precision
        self.means: LayerMeans | None = None
        self.line = ""

    def _means(self) -> LayerMeans:
        if self.means is None:
            specs = {*POOLER_LAYERS.values(), *LAYER_COMBOS, "L-1+L"}  # L-1+L: the flow's
            self.means = LayerMeans(self.encoder, sorted(specs), self.batch_size, self.precision)
            self.line = self.means.precision_line
        return self.means

    def view(self, row: Row):
        from simcse.baselines.flow import fit_flow

        means = self._means()
        if row.flow:
            return means.view(
                row.layers,
                f"baseline:flow:{means.source}",
                "flow",
                fit_postprocess=lambda x: fit_flow(x, 0),
                tag="-flow-0",
            )
        if row.pooler is not None:
            return means.view(row.layers, means.source, row.pooler)
        name = "+".join(map(str, means.resolve(row.layers)))
        return means.view(row.layers, f"baseline:layers={name}:{means.source}", f"layers={name}")


def baseline_table(
    encoder: str | None,
    tasks: str = "sts",
    trained: list[str] | None = None,
    data_dir: str | None = None,
    batch_size: int = 128,
    echo: Callable[[str], None] = lambda line: None,
    precision: str = "auto",
) -> list[dict]:
    """Every row's evaluation result (``name`` and ``seconds_total`` added, and ``shared_pass`` for the rows
    that read the shared forward pass), in table order. ``precision`` (auto | fp32 | bf16 | fp16) is the
    encoder rows' (each result's ``precision`` says which and why)."""
    from simcse.baselines.encoder import check_installed

    task_list = resolve_tasks(tasks)
    for name in (*BASELINES, *PAIR_BASELINES):  # every extra before the first row is computed
        check_installed(name)
    shared = _SharedPass(encoder, batch_size, precision)
    results = []
    for row in rows_for(encoder, trained or []):
        chosen = [t for t in task_list if t in sts.STS_TASKS] if row.pairs_only else task_list
        if not chosen:
            continue
        start = perf_counter()
        model = shared.view(row) if row.layers is not None else row.model
        try:
            result = evaluate(
                model,
                chosen,
                mode="test",
                data_dir=data_dir,
                batch_size=batch_size,
                pooler=row.pooler,
                whiten=row.whiten,
                prompt_denoise=row.prompt_denoise,
                precision=precision,
            )
        except SimCSEError as e:
            if row.pooler != "prompt" or "mask token" not in str(e):
                raise
            echo(f"simcse: {row.name}: skipped ({e})")  # a tokenizer without a mask token
            continue
        result["name"] = row.name
        result["seconds_total"] = perf_counter() - start
        if row.layers is not None:
            result["precision"] = shared.line
            result["shared_pass"] = True
        echo(
            f"simcse: {row.name}: {result['avg'].get('sts', float('nan')):.2f} STS avg in {result['seconds_total']:.0f} s"
        )
        results.append(result)
    return results


def runtime_table(results: list[dict]) -> str:
    """A markdown table of each row's ``seconds_total``; rows that read the shared pass are starred, with a
    note."""
    lines = ["| Row | seconds |", "|---|---|"]
    lines += [
        f"| {r['name']}{' *' if r.get('shared_pass') else ''} | {r['seconds_total']:.1f} |" for r in results
    ]
    if any(r.get("shared_pass") for r in results):
        lines += ["", "\\* reads the one forward pass these rows share (the first of them carries its time)"]
    return "\n".join(lines)
