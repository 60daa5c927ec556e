"""Beyond the paper: recover what the small cut loses by matching a stronger variant's embeddings.

The paper trains every cut with the same contrastive loss (InfoNCE with hard negatives). Here the small cut
also learns to reproduce, text by text, the embeddings of a teacher — the trained ``large`` variant or the
full-depth model — computed once before training. The teacher's embeddings travel in the dataset's ``label``
column (sentence-transformers' convention for precomputed targets, which its data collator hands to the loss),
and one forward pass of the student serves both losses:

    loss = InfoNCE(anchor, positive, negative) + weight * EmbedDistill(student columns, teacher columns)

``EmbedDistillLoss`` (sentence-transformers) does the embedding matching; its ``compute_loss_from_embeddings``
and ``MultipleNegativesRankingLoss.compute_loss_from_embeddings`` let the two share the student's embeddings, so
distillation costs no second forward pass of the student, only the teacher's one-off encoding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from st_prune.errors import StPruneError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from st_prune.data.training_data import TrainingData

LABEL_COLUMN = "label"  # the column sentence-transformers' collator passes to the loss as `labels`
from st_prune.training.config import DISTANCES  # noqa: E402  (one list: the settings check it too)


def unlabelled_copy(name: str, dataset: Any) -> Any:
    """A plain copy of ``dataset`` to add the teacher's ``label`` column to; one that has that column is refused.

    A trainer that already ran on the dataset left its transform on it (sentence-transformers' set_transform adds a
    dataset_name column in place): the copy drops it."""
    dataset = dataset.with_format(None)
    if LABEL_COLUMN in dataset.column_names:
        raise StPruneError(
            f"dataset {name!r} already has a {LABEL_COLUMN!r} column; distillation writes the "
            "teacher's embeddings there: rename or drop that column"
        )
    return dataset


def add_teacher_embeddings(teacher: SentenceTransformer, data: TrainingData, batch_size: int = 32) -> TrainingData:
    """``data`` with a ``label`` column holding the teacher's embedding of every text column of every row.

    Each column is encoded with the prompt the trainer will give the student for it (the dataset's instruction
    on the anchor), so teacher and student embed exactly the same input. Shape per row: (columns, dimension).
    """
    datasets = {}
    for name, dataset in data.datasets.items():
        dataset = unlabelled_copy(name, dataset)
        columns = [
            teacher.encode(
                dataset[column],
                prompt=data.prompt(name, column),
                batch_size=batch_size,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            for column in dataset.column_names
        ]
        stacked = np.stack(columns, axis=1).astype(np.float32)  # (rows, columns, dimension)
        datasets[name] = dataset.add_column(LABEL_COLUMN, stacked.tolist())
    return replace(data, datasets=datasets)


class DistilledContrastiveLoss(nn.Module):
    """A contrastive loss (``MultipleNegativesRankingLoss``) plus ``weight`` times embedding distillation.

    Labels are the teacher's embeddings, (batch, columns, dimension), as ``add_teacher_embeddings`` writes them.
    """

    def __init__(self, contrastive: nn.Module, weight: float = 1.0, distance_metric: str = "cosine") -> None:
        from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss

        super().__init__()
        if not hasattr(contrastive, "compute_loss_from_embeddings"):
            raise StPruneError(
                f"{type(contrastive).__name__} cannot share the student's embeddings with "
                "distillation; use the plain loss (cached_loss: false)"
            )
        if weight <= 0:
            raise StPruneError(f"the distillation weight must be above 0, got {weight}")
        if distance_metric not in DISTANCES:
            raise StPruneError(
                f"the distillation distance must be one of {', '.join(DISTANCES)}, got {distance_metric!r}"
            )
        self.model = contrastive.model
        self.contrastive = contrastive
        self.distill = EmbedDistillLoss(self.model, distance_metric=distance_metric)
        self.weight = weight
        self.last_parts: dict[str, float] = {}  # the two terms of the latest batch, for logs and tests

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        if labels is None or labels.dim() != 3:
            raise StPruneError(
                "distillation needs the teacher's embeddings in a 'label' column of shape "
                "(rows, columns, dimension): build the data with add_teacher_embeddings"
            )
        embeddings = embed_columns(self.model, sentence_features)
        if labels.size(1) != len(embeddings) or labels.size(2) != embeddings[0].size(-1):
            raise StPruneError(
                f"the teacher's embeddings are {tuple(labels.shape[1:])} per row, the student gives "
                f"{len(embeddings)} columns of {embeddings[0].size(-1)}: the teacher must embed the same columns "
                "with the same dimension (distill from a variant of the same base model)"
            )
        teacher = [labels[:, index].detach() for index in range(labels.size(1))]
        distill = self.distill.compute_loss_from_embeddings(embeddings, teacher)
        if len(embeddings) == 1:
            # Unlabelled text (self-distillation, st_prune.training.self_distill): no pair to contrast, the distance
            # to the teacher is the whole loss.
            self.last_parts = {"distill": float(distill.detach())}
            return distill
        contrastive = self.contrastive.compute_loss_from_embeddings(embeddings, None)
        self.last_parts = {"contrastive": float(contrastive.detach()), "distill": float(distill.detach())}
        return contrastive + self.weight * distill

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "distance_metric": self.distill.distance_metric,
            "contrastive": type(self.contrastive).__name__,
        }

    @property
    def citation(self) -> str:
        return self.distill.citation


def mean_distance(student: SentenceTransformer, data: TrainingData, distance_metric: str = "cosine") -> float:
    """Mean distance of the student's embeddings to the stored teacher embeddings (how far distillation is)."""
    from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss

    measure = EmbedDistillLoss(student, distance_metric=distance_metric)
    values = []
    for name, dataset in data.datasets.items():
        texts = [column for column in dataset.column_names if column != LABEL_COLUMN]
        labels = torch.tensor(dataset[LABEL_COLUMN])
        embeddings = [
            student.encode(
                dataset[column], prompt=data.prompt(name, column), convert_to_tensor=True, show_progress_bar=False
            )
            for column in texts
        ]
        with torch.no_grad():
            values.append(
                float(
                    measure.compute_loss_from_embeddings(
                        embeddings, [labels[:, index] for index in range(labels.size(1))]
                    )
                )
            )
    return float(np.mean(values))
