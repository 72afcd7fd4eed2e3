"""BERT-flow (Li et al. 2020): a normalising flow fitted, by maximum likelihood, to map an encoder's
sentence embeddings onto a standard Gaussian; the Gaussian latent is the new embedding
(``baseline:flow[:ENCODER]``). The flow is zuko's RealNVP (a maintained implementation); it is fitted on the
sentences being evaluated (per task, as SIF's components), deterministically for a seed.

The embedding fed to the flow is the encoder's average of its last two layers (``avg_top2``, BERT-flow's
best setting); the embeddings are standardised (mean 0, std 1 per dimension) before the flow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from simcse.core.errors import ConfigError
from simcse.modeling.sentence_encoder import SentenceEncoder, unit_rows

STEPS = 400
BATCH = 256
TRANSFORMS = 3
HIDDEN = (256, 256)
LEARNING_RATE = 1e-3


def fit_flow(
    matrix: np.ndarray, seed: int = 0, steps: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Train a RealNVP on ``matrix`` (rows are embeddings) for ``steps`` (default :data:`STEPS`); returns the
    map to the Gaussian latent."""
    try:
        import zuko
    except ImportError:
        raise ConfigError("baseline flow needs zuko (normalising flows): pip install zuko") from None
    import torch

    x = torch.as_tensor(matrix, dtype=torch.float32)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    x = (x - mean) / std
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        flow = zuko.flows.RealNVP(features=x.shape[1], transforms=TRANSFORMS, hidden_features=HIDDEN)
    optimizer = torch.optim.Adam(flow.parameters(), lr=LEARNING_RATE)
    for _ in range(STEPS if steps is None else steps):
        batch = x[torch.randint(0, len(x), (min(BATCH, len(x)),), generator=generator)]
        loss = -flow().log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    flow.eval()

    def to_latent(y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = flow().transform((torch.as_tensor(y, dtype=torch.float32) - mean) / std)
        return z.numpy().astype(np.float32)

    return to_latent


class FlowEncoder(SentenceEncoder):
    """BERT-flow over ``source``'s ``avg_top2`` embeddings (None: the embedded model): :meth:`raw` is the
    encoder's vectors, :meth:`fit_postprocess` fits a flow on them (the evaluator does it per task).
    """

    def __init__(self, source: str | None, seed: int = 0):
        from simcse.modeling.encoder import Encoder

        self.encoder = Encoder.load(source, "avg_top2")
        self.seed = seed
        self.dim, self.max_length = self.encoder.dim, self.encoder.max_length
        self.source = f"baseline:flow:{self.encoder.source}"
        self.pooler = "flow"

    def raw(self, sentences: Sequence[str], batch_size: int = 128, **_) -> np.ndarray:
        """The encoder's ``avg_top2`` embeddings (unnormalised), before the flow."""
        return self.encoder.encode(list(sentences), batch_size=batch_size)

    def fit_postprocess(self, matrix: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """A flow fitted on ``matrix`` (raw vectors) with the seed: the map to the Gaussian latent."""
        return fit_flow(matrix, self.seed)

    def encode(
        self, sentences: Sequence[str], batch_size: int = 128, normalize: bool = False, **_
    ) -> np.ndarray:
        """The Gaussian latents of ``sentences``, with a flow fitted on these very sentences (unit rows with
        ``normalize``)."""
        x = self.raw(sentences, batch_size=batch_size)
        x = self.fit_postprocess(x)(x)
        return unit_rows(x) if normalize else x

    def fingerprint(self) -> str:
        """The encoder's fingerprint with the flow's seed."""
        return f"{self.encoder.fingerprint()}-flow-{self.seed}"
