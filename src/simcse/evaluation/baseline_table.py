"""One table of the related work's training-free baselines for a given encoder, computed by the same
evaluator as everything else (``simcse baselines [ENCODER]``): the word-vector baselines over the encoder's
input token embeddings, the encoder's own pooled embeddings (with and without whitening), PromptBERT's
template [MASK] state (with and without template denoising), and optionally trained models; each row with
its runtime."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

from simcse.baselines.encoder import BASELINES, PAIR_BASELINES
from simcse.errors import SimCSEError
from simcse.evaluation import sts
from simcse.evaluation.suite import evaluate, resolve_tasks

OWN_POOLERS = ("cls_before_pooler", "avg", "avg_first_last", "avg_first_last_emb")


@dataclass(frozen=True)
class Row:
    name: str
    model: str | None
    pooler: str | None = None
    whiten: str | None = None
    pairs_only: bool = False  # WMD / WRD: STS tasks only
    prompt_denoise: str | None = None  # pooler prompt


def rows_for(encoder: str | None, trained: list[str]) -> list[Row]:
    source = f":{encoder}" if encoder else ""
    rows = [Row(f"{name} (token embeddings)", f"baseline:{name}{source}") for name in BASELINES]
    rows += [
        Row(f"{name} (token embeddings)", f"baseline:{name}{source}", pairs_only=True)
        for name in PAIR_BASELINES
    ]
    rows += [Row(f"encoder {pooler}", encoder, pooler=pooler) for pooler in OWN_POOLERS]
    rows += [Row("encoder avg + whitening (BERT-whitening)", encoder, pooler="avg", whiten="self")]
    rows += [Row("encoder prompt (PromptBERT's template)", encoder, pooler="prompt"),
             Row("encoder prompt + template denoising (PromptBERT)", encoder, pooler="prompt",
                 prompt_denoise="always")]  # fmt: skip
    rows += [Row("encoder last-two avg + flow (BERT-flow)", f"baseline:flow{source}")]
    for combo, label in (("0+L", "embeddings + last"), ("1+L", "first + last"), ("L-1+L", "last two")):
        rows += [
            Row(
                f"layers {label} + whitening (WhiteningBERT)",
                f"baseline:layers={combo}{source}",
                whiten="self",
            )
        ]
    rows += [Row(f"trained: {path}", path) for path in trained]
    return rows


def baseline_table(
    encoder: str | None,
    tasks: str = "sts",
    trained: list[str] | None = None,
    data_dir: str | None = None,
    batch_size: int = 128,
    echo: Callable[[str], None] = lambda line: None,
) -> list[dict]:
    """Every row's evaluation result (``name`` and ``seconds`` added), in table order."""
    from simcse.baselines.encoder import check_installed

    task_list = resolve_tasks(tasks)
    for name in (*BASELINES, *PAIR_BASELINES):  # every extra before the first row is computed
        check_installed(name)
    results = []
    for row in rows_for(encoder, trained or []):
        chosen = [t for t in task_list if t in sts.STS_TASKS] if row.pairs_only else task_list
        if not chosen:
            continue
        start = perf_counter()
        try:
            result = evaluate(row.model, chosen, mode="test", data_dir=data_dir, batch_size=batch_size,
                              pooler=row.pooler, whiten=row.whiten, prompt_denoise=row.prompt_denoise)  # fmt: skip
        except SimCSEError as e:
            if row.pooler != "prompt" or "mask token" not in str(e):
                raise
            echo(f"simcse: {row.name}: skipped ({e})")  # a tokenizer without a mask token
            continue
        result["name"] = row.name
        result["seconds_total"] = perf_counter() - start
        echo(
            f"simcse: {row.name}: {result['avg'].get('sts', float('nan')):.2f} STS avg in {result['seconds_total']:.0f} s"
        )
        results.append(result)
    return results


def runtime_table(results: list[dict]) -> str:
    lines = ["| Row | seconds |", "|---|---|"]
    lines += [f"| {r['name']} | {r['seconds_total']:.1f} |" for r in results]
    return "\n".join(lines)
