"""The trainer's checkpoint-selection evaluator: STS-B dev and SICK-R dev Spearman, or your own dev set
(``dev_file``: ``dev_spearman``).

Same readers and scoring as ``simcse eval --mode dev``; the distinct dev sentences are tokenised once and
reused at every evaluation, so a call costs one inference pass over ~4,000 sentences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simcse.evaluation import sts

DEV_TASKS = {"stsb_spearman": "STSBenchmark", "sickr_spearman": "SICKRelatedness"}
METRICS = (*DEV_TASKS, "avg_sts")
OWN_DEV_METRIC = "dev_spearman"


class _SentenceSet:
    """Distinct sentences tokenised once (again only for another tokenizer or length) and encoded on call."""

    def __init__(self, sentences: list[str], batch_size: int):
        self.sentences = list(dict.fromkeys(sentences))
        self.index = {s: i for i, s in enumerate(self.sentences)}
        self.batch_size = batch_size
        self.dtype = None  # the trainer's bf16 on a CPU with bf16 units: encode with bf16 weights
        self._tokens = None
        self._tokenizer_key = None

    def embed_function(self, encoder):
        """The encoder's embeddings of the set, as a function of a list of its sentences."""
        key = (id(encoder.tokenizer), encoder.max_length)
        if self._tokens is None or key != self._tokenizer_key:
            self._tokens = encoder.tokenize(self.sentences)
            self._tokenizer_key = key
        matrix = encoder.encode_tokenized(self._tokens, self.batch_size, dtype=self.dtype).numpy()
        return lambda sentences: matrix[[self.index[s] for s in sentences]]


class DevEvaluator(_SentenceSet):
    """``evaluator(encoder) -> {"stsb_spearman": .., "sickr_spearman": .., "avg_sts": ..}``."""

    def __init__(
        self, senteval_dir: str | Path | None, batch_size: int = 128, dev_file: str | Path | None = None
    ):
        if dev_file:
            self.data = {OWN_DEV_METRIC: sts.load_dev_file(dev_file)}
        else:
            self.data = {key: sts.load_sts_task(task, senteval_dir, "dev") for key, task in DEV_TASKS.items()}
        super().__init__([s for d in self.data.values() for s in d.sentences()], batch_size)

    def __call__(self, encoder) -> dict[str, float]:
        embed = self.embed_function(encoder)
        scores = {k: sts.score_sts(d, embed)["spearman"] for k, d in self.data.items()}
        if OWN_DEV_METRIC not in scores:
            scores["avg_sts"] = float(np.mean(list(scores.values())))
        return scores

    def describe(self) -> str:
        """One line for the run's log: what is scored."""
        if OWN_DEV_METRIC in self.data:
            data = self.data[OWN_DEV_METRIC]
            gold = np.concatenate([p.gold for p in data.subsets.values()])
            return f"dev set {data.name}: {data.n} pairs, scores {gold.min():g} to {gold.max():g}, Spearman"
        return "dev sets STS-B and SICK-R, Spearman"


class GeometryEvaluator(_SentenceSet):
    """``evaluator(encoder) -> {"align": .., "uniform": ..}`` on STS-B dev (alignment over the pairs with gold
    score > 4, uniformity over all its sentences): the trajectory of the paper's Figure 2, logged every
    ``geometry_steps``. The sentences are tokenised once."""

    def __init__(self, senteval_dir: str | Path, batch_size: int = 128):
        self.data = sts.load_sts_task("STSBenchmark", senteval_dir, "dev")
        super().__init__(self.data.sentences(), batch_size)

    def __call__(self, encoder) -> dict[str, float]:
        from simcse.evaluation.tasks import score_geometry

        scores = score_geometry(self.data, self.embed_function(encoder))
        return {"align": scores["align"], "uniform": scores["uniform"]}
