"""What every stage of a run may ask for: the recipe, the run folder, and what follows from them (the base model's
source, the training data loaded once, a variant's depth and folders, the encoder at a depth).

Stages take a ``RunContext`` and never the runner: the runner only orders them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from st_prune.pipeline.recipe import (
    instruction_prompt,
    load_recipe_data,
    recipe_relative,
    resolve_model_reference,
)
from st_prune.pipeline.run_folder import RunFolder
from st_prune.pipeline.schema import LocalTaskSpec, Recipe, VariantSpec


class RunContext:
    """One recipe run's shared inputs; ``org``/``token``/``endpoint`` are the publish settings (org: the
    ``--push-to-hub`` flag, None when not publishing)."""

    def __init__(self, recipe: Recipe, folder: RunFolder, *, org: str | None = None, token: str | None = None,
                 endpoint: str | None = None, log: Callable[[str], None] = print) -> None:
        self.recipe = recipe
        self.folder = folder
        self.org = org
        self.token = token
        self.endpoint = endpoint
        self.log = log
        self._source: str | None = None
        self._data: Any = None  # st_prune.data.echo.TrainingSource, loaded once by training_source()

    # --- the base model and the data --------------------------------------------------------------------
    def source(self) -> str:
        """The base model as ``encoder_from_llm`` loads it (``pypi:`` references and recipe-relative paths resolved)."""
        if self._source is None:
            relative_to = Path(self.recipe.source).parent if self.recipe.source else None
            self._source = resolve_model_reference(self.recipe.base.model, relative_to)
        return self._source

    def training_source(self):
        """The training data (``st_prune.data.echo.TrainingSource``, loaded once): ``data`` and ``prompts`` for the
        scan and the trainer, ``rows`` for plain texts."""
        if self._data is None:
            self._data = load_recipe_data(self.recipe)
        return self._data

    def rows(self):
        """The training triplets as a ``datasets.Dataset`` (loaded once)."""
        return self.training_source().rows

    def local_task_path(self, task: LocalTaskSpec) -> Path:
        return recipe_relative(self.recipe, task.path)

    def encoder(self, layers: int | None, max_seq_length: int | None = None):
        """The base cut to ``layers`` (None: full depth) as a SentenceTransformer with the recipe's pooling and prompts."""
        from st_prune.model.truncated_llm import encoder_from_llm

        return encoder_from_llm(
            self.source(),
            layers=layers,
            pooling=self.recipe.base.pooling,
            max_seq_length=max_seq_length or self.recipe.base.max_seq_length,
            prompts={"query": instruction_prompt(self.recipe.query_instruction), "document": ""},
            dtype=self.recipe.base.dtype,
        )

    # --- a variant --------------------------------------------------------------------------------------
    def layers_of(self, variant: VariantSpec) -> int | None:
        """Layers a variant keeps, once known (fixed counts at once; picks and fractions after the scan)."""
        if variant.layers is not None:
            return variant.layers
        scan = self.folder.scan()
        if scan is None:
            return None
        if variant.pick:
            return int(scan[variant.pick])
        from st_prune.model import architectures

        return architectures.layers_to_keep(scan["num_layers"], fraction=variant.fraction)

    def repo_name(self, variant: VariantSpec) -> str:
        return self.recipe.repo_name(variant, self.layers_of(variant))

    def repo_id(self, variant: VariantSpec) -> str:
        org = self.org or self.recipe.publish.org
        name = self.repo_name(variant)
        return f"{org}/{name}" if org else name

    def zoo_dir(self, variant: VariantSpec) -> Path:
        """The variant's model folder, exactly as published."""
        return self.folder.models_dir / self.repo_name(variant)

    def export_dir(self, variant: VariantSpec) -> Path:
        """Where export writes: the model folder itself, or the work folder when a trim makes the model folder."""
        return self.folder.work(variant.name) / "untrimmed" if self.recipe.trims(variant) else self.zoo_dir(variant)

    def final_record(self, variant: VariantSpec) -> dict[str, Any]:
        """Parameters and weight bytes of the model folder as shipped (trimmed where the recipe trims)."""
        stage = "trim" if self.recipe.trims(variant) else "export"
        return self.folder.record(variant.name, f"{stage}.json", stage=stage)
