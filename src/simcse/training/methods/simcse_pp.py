"""SimCSE++ (Xu et al. 2023): negatives without dropout ("off-dropout": the sentence encoded once more with
dropout off), and a dimension-wise contrastive term."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simcse.core.errors import DataError
from simcse.core.options import must_be_non_negative, must_be_positive, option
from simcse.training.methods.base import CollatePiece, Method

GROUP = "SimCSE++ (Xu et al. 2023)"


@dataclass
class SimCSEPlusPlusOptions:
    """SimCSE++'s options; each field's help line documents it."""

    negatives_without_dropout: bool = option(
        False,
        "SimCSE++: the negative pairs are the sentences encoded once more with dropout off (unsup)",
        GROUP,
    )
    dimension_contrast_weight: float = option(
        0.0,
        "SimCSE++: > 0 adds the dimension-wise contrastive term with this weight (the paper's 0.1)",
        GROUP,
    )
    dimension_contrast_temperature: float = option(
        5.0, "SimCSE++: the dimension-wise term's temperature", GROUP
    )


class DropoutOffCopy(CollatePiece):
    """The anchor's tokens once more, as the last view of each row (encoded with dropout off)."""

    copies = (0,)


class SimCSEPlusPlus(Method):
    """SimCSE++ (``negatives_without_dropout`` or ``dimension_contrast_weight`` set): negatives encoded with
    dropout off, and a dimension-wise contrastive term."""

    name = "simcse_pp"
    paper = "Xu et al. 2023, SimCSE++: Improving Contrastive Learning for Sentence Embeddings from Two Perspectives"
    Options = SimCSEPlusPlusOptions

    def enabled(self, config: Any) -> bool:
        """With ``negatives_without_dropout`` or a ``dimension_contrast_weight``."""
        return bool(config.negatives_without_dropout or config.dimension_contrast_weight)

    def problems(self, config: Any) -> list[str]:
        """Dropout-off negatives only for unsup training with one encoder and independent masks; a
        non-negative weight, a positive temperature, and no dimension term with a shared mask."""
        found = []
        one_shared_pass = (
            config.objective != "sup" and config.dropout_mask != "shared" and config.encoders != "two"
        )
        if config.negatives_without_dropout and not one_shared_pass:
            found.append(
                "negatives_without_dropout is for unsup training with one shared encoder and "
                "independent dropout masks"
            )
        found += must_be_non_negative(config, "dimension_contrast_weight")
        found += must_be_positive(config, "dimension_contrast_temperature")
        if config.dimension_contrast_weight and config.dropout_mask == "shared":
            found.append("dimension_contrast_weight compares two views; dropout_mask shared has one")
        return found

    def check_rows(self, config: Any, data: Any) -> None:
        """Dropout-off negatives need one-sentence rows."""
        if config.negatives_without_dropout and data.columns != 1:
            raise DataError(
                data.path,
                f"negatives_without_dropout is for one-sentence (unsup) rows; this file "
                f"has {data.columns} columns",
            )

    def extra_views(self, config: Any) -> int:
        """One (the dropout-off copy) with ``negatives_without_dropout``."""
        return 1 if config.negatives_without_dropout else 0

    def dropout_off_views(self, config: Any, views: int) -> tuple[int, ...]:
        """The last view (the copy) with ``negatives_without_dropout``."""
        return (views - 1,) if config.negatives_without_dropout else ()

    def collate_piece(self, config: Any, inputs: Any, tokenizer: Any) -> CollatePiece | None:
        """:class:`DropoutOffCopy` with ``negatives_without_dropout``."""
        return DropoutOffCopy() if config.negatives_without_dropout else None

    def make_loss(self, config: Any, scale: float, sources: list[Any], filters: list[Any]) -> Any:
        """:class:`~simcse.training.losses.OffDropoutLoss` with ``negatives_without_dropout`` (the filters are
        not used), else None."""
        if not config.negatives_without_dropout:
            return None
        from simcse.training.losses import OffDropoutLoss

        return OffDropoutLoss(config.temperature, scale, config.similarity, sources)

    def wrap_loss(self, config: Any, loss: Any) -> Any:
        """``loss`` with :class:`~simcse.training.losses.DimensionContrast` added when its weight is set."""
        if not config.dimension_contrast_weight:
            return loss
        from simcse.training.losses import DimensionContrast

        return DimensionContrast(
            loss, config.dimension_contrast_weight, config.dimension_contrast_temperature
        )


METHOD = SimCSEPlusPlus()
