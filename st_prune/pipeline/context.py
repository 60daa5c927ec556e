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

    def __init__(
        self,
        recipe: Recipe,
        folder: RunFolder,
        *,
        org: str | None = None,
        token: str | None = None,
        endpoint: str | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
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
            self._data = load_recipe_data(self.recipe, self.instruction_template())
            if self.is_embedder():  # an embedder sees its texts as it embeds them: its own query/document prompts
                import dataclasses

                from st_prune.model.embedder import embedder_prompts

                prompts = embedder_prompts(self.source(), self._data.data, self._data.prompts)
                self._data = dataclasses.replace(self._data, prompts=prompts)
        return self._data

    def instruction_template(self) -> str:
        """How the base puts an instruction before a query: a trained embedder's own format (Qwen3-Embedding's
        ``Instruct: ...\\nQuery:``), else st-prune's (``st_prune.prompt_format.instruction_template``)."""
        from st_prune.model.embedder import embedder_instruction_template
        from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE

        return embedder_instruction_template(self.source()) if self.is_embedder() else QUERY_PROMPT_TEMPLATE

    def rows(self):
        """The training triplets as a ``datasets.Dataset`` (loaded once)."""
        return self.training_source().rows

    def local_task_path(self, task: LocalTaskSpec) -> Path:
        return recipe_relative(self.recipe, task.path)

    def is_embedder(self) -> bool:
        """The base is a trained sentence-transformers embedder (``base.kind``, else its modules.json; issue 25)."""
        from st_prune.errors import StPruneError
        from st_prune.model.embedder import is_sentence_transformer

        found = is_sentence_transformer(self.source())
        kind = self.recipe.base.kind
        if kind is not None and (kind == "sentence-transformers") != found:
            what = (
                "a sentence-transformers model (it has a modules.json)" if found else "no sentence-transformers model"
            )
            raise StPruneError(f"base.kind is {kind} but {self.recipe.base.model} is {what}; fix base.kind or drop it")
        return found

    def encoder(self, layers: int | None, max_seq_length: int | None = None, variant: VariantSpec | None = None):
        """The base cut to ``layers`` (None: full depth) as a SentenceTransformer with the recipe's pooling and prompts;
        a trained embedder keeps its own pooling, modules and prompts. With ``variant``, also cut to its MLP width."""
        from st_prune.model.truncated_llm import encoder_from_llm

        if self.is_embedder():
            model = encoder_from_llm(
                self.source(),
                layers=layers,
                dtype=self.recipe.base.dtype,
                max_seq_length=max_seq_length or self.recipe.base.max_seq_length,
            )
        else:
            model = encoder_from_llm(
                self.source(),
                layers=layers,
                pooling=self.recipe.base.pooling,
                max_seq_length=max_seq_length or self.recipe.base.max_seq_length,
                prompts={"query": instruction_prompt(self.recipe.query_instruction), "document": ""},
                dtype=self.recipe.base.dtype,
            )
        if variant is not None and self.recipe.mlp_keep_of(variant) < 1:
            self._cut_width(model, variant)
        return model

    def _cut_width(self, model, variant: VariantSpec) -> None:
        """Cut ``model``'s MLP width to the variant's ``mlp_keep``: channels ranked on the training data once, kept
        in ``work/<variant>/width.json`` so training, export and a distillation teacher cut the very same channels."""
        from st_prune.l3prune.shrink import importance_texts
        from st_prune.model import width
        from st_prune.util import distributed
        from st_prune.util.files import read_json, write_json_atomic

        keep, layers = self.recipe.mlp_keep_of(variant), len(width.mlps(model))
        path = self.folder.work(variant.name) / "width.json"
        saved = read_json(path, fix="delete it to rank the channels again") if path.is_file() else None
        if saved and saved.get("mlp_keep") == keep and len(saved.get("channels") or []) == layers:
            width.apply_channels(model, keep, saved["channels"])
            return
        source = self.training_source()
        seed = self.recipe.training_for(variant).seed
        texts = importance_texts(source.data, source.prompts, seed=seed, template=self.instruction_template())
        record = width.prune_mlp_width(model, keep, width.channel_importance(model, texts))
        if distributed.is_main():
            write_json_atomic(path, record)
        self.log(
            f"       MLP width {record['intermediate_size']}/{record['original_intermediate_size']} channels "
            f"per layer (mlp_keep {keep:g})"
        )

    def width_plan(self, variant: VariantSpec) -> dict[str, Any] | None:
        """The base config's MLP sizes for the variant's width cut (no weights loaded); None at full width."""
        keep = self.recipe.mlp_keep_of(variant)
        if keep >= 1:
            return None
        from st_prune.model import architectures
        from st_prune.model.truncated_llm import load_base_config

        config = architectures.text_config(load_base_config(self.source()))
        return {"mlp_keep": keep, "hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size}

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
