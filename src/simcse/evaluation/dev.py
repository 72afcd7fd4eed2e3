"""The trainer's checkpoint-selection evaluator: STS-B dev and SICK-R dev Spearman.

Same readers and scoring as ``simcse eval --mode dev``; the distinct dev sentences are tokenised once and
reused at every evaluation, so a call costs one inference pass over ~4,000 sentences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simcse.evaluation import sts

DEV_TASKS = {"stsb_spearman": "STSBenchmark", "sickr_spearman": "SICKRelatedness"}
METRICS = (*DEV_TASKS, "avg_sts")


class DevEvaluator:
    """``evaluator(encoder) -> {"stsb_spearman": .., "sickr_spearman": .., "avg_sts": ..}``."""

    def __init__(self, senteval_dir: str | Path, batch_size: int = 128):
        self.data = {key: sts.load_sts_task(task, senteval_dir, "dev") for key, task in DEV_TASKS.items()}
        self.sentences = list(dict.fromkeys(s for d in self.data.values() for s in d.sentences()))
        self.index = {s: i for i, s in enumerate(self.sentences)}
        self.batch_size = batch_size
        self._tokens = None
        self._tokenizer_key = None

    def __call__(self, encoder) -> dict[str, float]:
        key = (id(encoder.tokenizer), encoder.max_length)
        if self._tokens is None or key != self._tokenizer_key:
            self._tokens = encoder.tokenize(self.sentences)
            self._tokenizer_key = key
        matrix = encoder.encode_tokenized(self._tokens, self.batch_size).numpy()

        def embed(sentences: list[str]) -> np.ndarray:
            return matrix[[self.index[s] for s in sentences]]

        scores = {k: sts.score_sts(d, embed)["spearman"] for k, d in self.data.items()}
        scores["avg_sts"] = float(np.mean(list(scores.values())))
        return scores
