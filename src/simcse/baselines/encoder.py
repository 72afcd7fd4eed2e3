"""A training-free encoder with the interface the evaluator uses (``encode``, ``fingerprint``, ``source``,
``pooler``): ``baseline:NAME[:SOURCE]``, NAME one of :data:`BASELINES`, SOURCE an HF encoder (id or
directory; default the embedded model) or a word-vector file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from simcse.baselines import pooling
from simcse.baselines.flow import FlowEncoder
from simcse.baselines.layers import LayerAverage, parse_layers
from simcse.baselines.transport import TRANSPORTS, TransportSimilarity
from simcse.baselines.word_vectors import WordVectors, load_word_vectors
from simcse.core.errors import ConfigError
from simcse.modeling.sentence_encoder import SentenceEncoder, unit_rows

PREFIX = "baseline:"
BASELINES = (*pooling.POOLINGS, "sif", "usif", "abtt")
PAIR_BASELINES = TRANSPORTS  # similarity of a pair, no sentence vector


def is_baseline(model: object) -> bool:
    """Whether ``model`` names a training-free baseline (a string starting with ``baseline:``)."""
    return isinstance(model, str) and model.startswith(PREFIX)


class BaselineEncoder(SentenceEncoder):
    """A word-vector baseline (``avg``, the SWEMs, power means, SIF, uSIF, All-but-the-Top): each sentence's
    known words pooled as :mod:`simcse.baselines.pooling` defines it; ``name`` one of :data:`BASELINES`,
    ``vectors`` where the word vectors come from.
    """

    def __init__(self, name: str, vectors: WordVectors):
        if name not in BASELINES:
            raise ConfigError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
        self.name, self.vectors = name, vectors
        self.pooler = name
        self.source = f"{PREFIX}{name}:{vectors.source}"
        self.matrix = pooling.all_but_the_top(vectors.matrix) if name == "abtt" else vectors.matrix
        self.dim = self.matrix.shape[1] * {"swem_concat": 2, "power_means": 3}.get(name, 1)
        self._usif_table: tuple[dict[str, float], float, float] | None = None
        # only SIF and uSIF fit on the sentences encoded together; the others give each sentence one vector
        self.fit_postprocess = self._fit_components if name in ("sif", "usif") else None

    def _weights(self, tokens: list[str]) -> np.ndarray:
        from wordfreq import word_frequency

        return np.array(
            [pooling.SIF_A / (pooling.SIF_A + word_frequency(self.vectors.display(t), "en")) for t in tokens],
            dtype=np.float32,
        )

    def _usif(self) -> tuple[dict[str, float], float, float]:
        """wordfreq's English table as uSIF's vocabulary probabilities, its smallest value for unknown
        words, and a (computed once)."""
        if self._usif_table is None:
            from wordfreq import get_frequency_dict

            table = get_frequency_dict("en")
            self._usif_table = (table, min(table.values()), pooling.usif_a(list(table.values())))
        return self._usif_table

    def _sentence(self, sentence: str) -> np.ndarray:
        tokens = self.vectors.tokens(sentence)
        if self.name == "usif" and not tokens:
            return np.full(self.dim, self._usif()[2], dtype=np.float32)  # the reference: a vector of a's
        if not tokens:
            return np.zeros(self.dim, dtype=np.float32)
        v = self.matrix[[self.vectors.tokens_of[t] for t in tokens]]
        if self.name == "usif":
            table, smallest, a = self._usif()
            p = np.array([table.get(self.vectors.display(t).lower(), smallest) for t in tokens])
            return pooling.usif_sentence(v, p, a)
        if self.name == "sif":
            return pooling.weighted_average(v, self._weights(tokens))
        if self.name == "abtt":
            return pooling.average(v)
        return pooling.POOLINGS[self.name](v)

    def raw(self, sentences: Sequence[str], **_) -> np.ndarray:
        """The sentence vectors before any common-component removal."""
        if not sentences:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._sentence(s) for s in sentences]).astype(np.float32)

    def _fit_components(self, matrix: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """SIF's / uSIF's common components fitted on ``matrix`` (raw vectors), as ``fit_postprocess``: the
        evaluator fits it per task, on that task's sentences, as Arora et al.'s code does."""
        if self.name == "sif":
            return pooling.fit_first_component(matrix)
        return pooling.fit_weighted_components(matrix)

    def encode(
        self, sentences: Sequence[str], batch_size: int = 128, normalize: bool = False, **_
    ) -> np.ndarray:
        """One vector per sentence (float32; unit rows with ``normalize``); for ``sif`` / ``usif`` the common
        components of THESE sentences are removed."""
        x = self.raw(sentences)
        if self.fit_postprocess is not None:
            x = self.fit_postprocess(x)(x)
        return unit_rows(x) if normalize else x

    def fingerprint(self) -> str:
        """The baseline's name and its word vectors' fingerprint (keys embedding caches)."""
        return f"{self.name}-{self.vectors.fingerprint()}"


def check_installed(name: str) -> None:
    """SIF / uSIF need wordfreq, WMD / WRD need POT: a one-line error with the install command."""
    import importlib.util

    needed = {"sif": "wordfreq", "usif": "wordfreq", "wmd": "ot", "wrd": "ot"}.get(name)
    if needed and importlib.util.find_spec(needed) is None:
        package = {"ot": "pot"}.get(needed, needed)
        raise ConfigError(
            f"baseline {name} needs {package}: pip install {package} (or 'simcse-toolkit[baselines]')"
        )


def load_baseline(spec: str) -> BaselineEncoder | TransportSimilarity | LayerAverage:
    """``baseline:NAME`` (word vectors of the embedded model) or ``baseline:NAME:SOURCE``; ``NAME`` may also
    be ``layers=1+12`` (WhiteningBERT's layer average of the encoder SOURCE)."""
    name, _, source = spec[len(PREFIX) :].partition(":")
    if name.startswith("layers="):
        return LayerAverage(parse_layers(name[len("layers=") :]), source or None)
    if name == "flow":
        return FlowEncoder(source or None)
    if name not in BASELINES + PAIR_BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES + PAIR_BASELINES)}")
    check_installed(name)
    vectors = load_word_vectors(source or None)
    return TransportSimilarity(name, vectors) if name in PAIR_BASELINES else BaselineEncoder(name, vectors)


def load_model_or_baseline(
    model: Any,
    pooler: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    **options: Any,
) -> SentenceEncoder:
    """The encoder of ``model`` wherever a model is accepted: a baseline for ``baseline:NAME[:SOURCE]``
    (:func:`load_baseline`; it has its own pooling and runs in torch), else
    :func:`~simcse.modeling.loading.load_encoder`'s.

    Args:
        model: ``baseline:NAME[:SOURCE]``, or what :func:`~simcse.modeling.loading.load_encoder` takes.
        pooler: the model's pooler (None: its own); a baseline takes none.
        backend: torch, onnx, openvino (None: torch); a baseline runs in torch.
        precision: an exported graph's precision (see ``load_encoder``).
        **options: ``load_encoder``'s keyword options; a baseline takes ``max_length`` only (and ignores
            it: it has no tokens), any other that is not None is refused.

    Raises:
        ConfigError: a pooler, a backend other than torch or an option for a baseline; an unknown baseline."""
    from simcse.modeling.loading import load_encoder

    if not is_baseline(model):
        return load_encoder(model, pooler, backend, precision, **options)
    if pooler is not None:
        raise ConfigError(f"{model} pools as the baseline does: --pooler does not apply to it")
    if backend not in (None, "torch", "auto"):
        raise ConfigError(f"{model} runs in torch: backend {backend} loads an export directory")
    refused = sorted(
        k for k, v in options.items() if v is not None and k not in ("max_length", "plain_pooler")
    )
    if refused:
        raise ConfigError(f"{model} is a training-free baseline: {', '.join(refused)} does not apply to it")
    encoder = load_baseline(model)
    encoder.check_max_length(options.get("max_length"))
    return encoder
