"""Who a pruned model is to mteb: the ``org/name`` and revision its results are filed under, and its ``ModelMeta``.

The ``ModelMeta`` is measured on the pruned model itself (parameters, weight memory, embedding size, context), not
copied from the base LLM, and it goes into every results folder as ``model_meta.json``, which ``read_model_meta``
reads back for later runs and for the leaderboard submission.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

from st_prune.errors import StPruneError
from st_prune.evaluation.tasks import PAPER_CITATION, is_mteb_task, mteb_task_names, unknown_tasks_message

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

NO_REVISION = "no_revision_available"  # mteb's own placeholder for an unknown revision
_HUB_SNAPSHOT_PATTERN = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<revision>[0-9a-f]{40})")


def resolve_model_identity(
    model: SentenceTransformer,
    model_path: str | Path | None = None,
    *,
    model_name: str | None = None,
    revision: str | None = None,
) -> tuple[str, str]:
    """The `org/name` and revision results are filed under.

    Taken from the arguments, else from a Hub cache path (`models--org--name/snapshots/<sha>`), else from the
    model's card data. A folder that carries no name raises `StPruneError` asking for `--model-name`; a named
    model without a known revision is filed under mteb's `no_revision_available`.
    """
    card = model.model_card_data
    snapshot = _HUB_SNAPSHOT_PATTERN.search(Path(model_path).resolve().as_posix()) if model_path else None
    name = model_name
    if name is None and snapshot:
        name = f"{snapshot['org']}/{snapshot['name']}"
    name = name or card.model_id or card.model_name
    if not name:
        where = f"model {model_path}" if model_path else "the model"
        raise StPruneError(
            f"{where} has no name to file results under: pass --model-name ORG/NAME "
            "(and --revision, the Hub commit, once it is published)"
        )
    if "/" not in name:
        raise StPruneError(f"model name {name!r} must look like ORG/NAME: pass --model-name ORG/NAME")
    if revision is None and snapshot and name == f"{snapshot['org']}/{snapshot['name']}":
        revision = snapshot["revision"]
    return name, revision or NO_REVISION


def count_parameters(model: SentenceTransformer) -> int:
    """Parameters of the model as it is (after pruning); tied weights count once."""
    return sum(parameter.numel() for parameter in model.parameters())


def _embedding_parameters(model: SentenceTransformer) -> int | None:
    """Size of the token embedding matrix of the first (transformer) module, when it has one."""
    first = model[0]
    backbone = getattr(first, "auto_model", None) or getattr(first, "model", None)
    try:
        return int(backbone.get_input_embeddings().weight.numel())
    except AttributeError:
        return None


def _memory_usage_mb(model: SentenceTransformer) -> float:
    """Weight memory in the dtype the model is loaded in (mteb's own estimate assumes float32)."""
    return round(sum(p.numel() * p.element_size() for p in model.parameters()) / 1024**2, 2)


def build_model_meta(
    model: SentenceTransformer,
    *,
    name: str,
    revision: str,
    base_model: str | None = None,
    license: str | None = None,
    training_datasets: Iterable[str] | None = None,
    release_date: str | None = None,
    languages: Sequence[str] = ("eng-Latn",),
    open_weights: bool = True,
    public_training_code: str | None = None,
    public_training_data: str | None = None,
    reference: str | None = None,
) -> ModelMeta:
    """mteb's description of a pruned model, measured on the model itself.

    `n_parameters`, `memory_usage_mb`, `embed_dim` and `max_tokens` are those of the pruned model, not of the
    base LLM. `training_datasets` are the MTEB task names the training data overlaps (mteb uses them to flag
    zero-shot results); `base_model` becomes `adapted_from`. `evaluate.evaluate_model` adds the prompts it used to the
    loader's `model_prompts`, so that the registration file reproduces the evaluation.
    """
    if "/" not in name:
        raise StPruneError(f"model name {name!r} must look like ORG/NAME: pass --model-name ORG/NAME")
    if training_datasets is not None:
        training_datasets = set(training_datasets)
        unknown = sorted(dataset for dataset in training_datasets if not is_mteb_task(dataset))
        if unknown:
            raise StPruneError(
                unknown_tasks_message(
                    unknown, mteb_task_names(), "training datasets are named as MTEB tasks (e.g. MSMARCO, NQ)"
                )
            )
    similarity = model.similarity_fn_name or ScoringFunction.COSINE.value
    return ModelMeta(
        loader=SentenceTransformerEncoderWrapper,
        name=name,
        revision=revision,
        release_date=release_date or _dt.date.today().isoformat(),
        languages=list(languages),
        n_parameters=count_parameters(model),
        n_embedding_parameters=_embedding_parameters(model),
        memory_usage_mb=_memory_usage_mb(model),
        max_tokens=model.max_seq_length,
        embed_dim=model.get_embedding_dimension(),
        license=license,
        open_weights=open_weights,
        public_training_code=public_training_code,
        public_training_data=public_training_data,
        framework=["Sentence Transformers", "PyTorch"],
        reference=reference or f"https://huggingface.co/{name}",
        similarity_fn_name=similarity,
        use_instructions=True,
        training_datasets=training_datasets,
        adapted_from=base_model,
        modalities=["text"],
        model_type=["dense"],
        citation=PAPER_CITATION,
    )


def read_model_meta(path: Path, *, fix: str) -> dict[str, Any]:
    """The JSON object in a results folder's ``model_meta.json``; a damaged one is one line ending in ``fix``."""
    from st_prune.util.files import read_json

    data = read_json(path, fix=fix)
    if not isinstance(data, dict):
        raise StPruneError(f"{path} is not a JSON object (it holds a {type(data).__name__}); {fix}")
    return data
