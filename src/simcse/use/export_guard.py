"""The quality check of a reduced-precision or exported encoder against the fp32 PyTorch model it came from.

Two measures on fixed data: the cosine between the two models' embeddings of the same sentences (the STS-B
dev sentences, or :data:`~simcse.modeling.encoder.GUARD_SENTENCES` without the data), and STS-B dev Spearman
(x100) of each. An export whose Spearman drops by more than ``max_drop`` points, whose mean cosine to
fp32 is below :data:`MIN_COSINE` (a broken graph, also caught without the STS data), or one of whose
sentences' cosine to fp32 is below :data:`MIN_WORST_COSINE` (a neighbour a search would get wrong, even when
the STS average hides it) is refused, with advice on what to try instead when the caller has some.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simcse.core.errors import SimCSEError

DEFAULT_MAX_DROP = {"int8": 0.5, "bf16": 0.1, "fp32": 0.1}
# measured on all-MiniLM-L6-v2's STS-B dev sentences: fp32 graphs 1.0000, int8 0.985 (NNCF) to 0.993 (ORT)
MIN_COSINE = {"int8": 0.95, "bf16": 0.99, "fp32": 0.99}
# the least cosine of any one sentence; measured on the same sentences, AVX2-only CPU: ORT's dynamic int8
# 0.97 (per channel), NNCF's weight-only int8 0.998, NNCF's static int8 0.70 (refused)
MIN_WORST_COSINE = {"int8": 0.9, "bf16": 0.97, "fp32": 0.99}


@dataclass
class GuardReport:
    """What :func:`compare` measured: the sentences compared, the mean and minimum cosine between the two
    models' unit embeddings, and STS-B dev Spearman (x100) of the fp32 reference and of the candidate (None
    without the STS data)."""

    sentences: int
    cosine_mean: float
    cosine_min: float
    stsb_dev_reference: float | None
    stsb_dev_exported: float | None

    @property
    def drop(self) -> float | None:
        """The candidate's STS-B dev Spearman below the reference's, in points (None without the STS data)."""
        if self.stsb_dev_reference is None or self.stsb_dev_exported is None:
            return None
        return self.stsb_dev_reference - self.stsb_dev_exported

    def line(self) -> str:
        """The report in one line: the cosines, and the STS-B dev scores and their difference if measured."""
        sts = (
            ""
            if self.drop is None
            else f"; STS-B dev {self.stsb_dev_exported:.2f} vs {self.stsb_dev_reference:.2f}"
            f" in fp32 ({-self.drop:+.2f})"
        )
        return f"cosine to fp32 {self.cosine_mean:.4f} mean, {self.cosine_min:.4f} min on {self.sentences} sentences{sts}"

    def as_dict(self) -> dict[str, Any]:
        """The fields and ``drop``, as JSON-ready data."""
        return asdict(self) | {"drop": self.drop}


def compare(reference: Any, candidate: Any, senteval_dir: Path | None, batch_size: int = 128) -> GuardReport:
    """``candidate`` (any encoder with ``encode``) against ``reference`` (the fp32 Encoder): on STS-B dev when
    ``senteval_dir`` is given, else on the guard sentences (cosine only)."""
    from simcse.evaluation import sts
    from simcse.modeling.encoder import GUARD_SENTENCES

    data = sts.load_sts_task("STSBenchmark", senteval_dir, "dev") if senteval_dir is not None else None
    sentences = list(dict.fromkeys(data.sentences())) if data is not None else list(GUARD_SENTENCES)
    ref = reference.encode(sentences, batch_size, normalize=True)
    got = candidate.encode(sentences, batch_size, normalize=True)
    cosine = (ref * got).sum(-1)
    scores: list[float | None] = [None, None]
    if data is not None:
        row = {s: i for i, s in enumerate(sentences)}
        for k, matrix in enumerate((ref, got)):
            scores[k] = sts.score_sts(data, lambda batch, m=matrix: m[[row[s] for s in batch]])["spearman"]
    return GuardReport(len(sentences), float(cosine.mean()), float(cosine.min()), *scores)


def enforce(
    report: GuardReport,
    max_drop: float,
    min_cosine: float,
    what: str,
    min_worst: float | None = None,
    advice: str | None = None,
) -> None:
    """Refuse ``what`` (one line) when its STS-B dev Spearman dropped by more than ``max_drop`` points, its
    mean cosine to fp32 is below ``min_cosine``, or (``min_worst`` given) its least cosine is below
    ``min_worst``.

    Args:
        report: what :func:`compare` measured.
        max_drop: the STS-B dev points ``what`` may lose.
        min_cosine: the least mean cosine to fp32.
        what: the refused thing, as the message names it (``the onnx export (int8, scheme dynamic)``).
        min_worst: the least cosine of any one sentence (None: not checked).
        advice: appended to a refusal (``try --int8-scheme weights``), or None.

    Raises:
        SimCSEError: one line saying what was lost, that nothing was written, and ``advice``.
    """
    tail = "nothing was written" + (f"; {advice}" if advice else "")
    if not np.isfinite(report.cosine_mean):
        raise SimCSEError(f"{what} gives non-finite embeddings; {tail}")
    if report.drop is not None and report.drop > max_drop:
        raise SimCSEError(
            f"{what} loses {report.drop:.2f} STS-B dev points (more than --max-drop {max_drop:g}: "
            f"{report.line()}); {tail}"
        )
    if report.cosine_mean < min_cosine:
        raise SimCSEError(
            f"{what} is too far from the fp32 model (mean cosine {report.cosine_mean:.4f}, below "
            f"{min_cosine:g}: {report.line()}); {tail}"
        )
    if min_worst is not None and report.cosine_min < min_worst:
        raise SimCSEError(
            f"{what} turns some sentences away from the fp32 model (least cosine {report.cosine_min:.4f}, "
            f"below {min_worst:g}: {report.line()}); {tail}"
        )
