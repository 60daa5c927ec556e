"""A trained sentence-transformers embedder as the thing to cut: what it is made of, read without loading weights.

A folder (or Hub id) with a ``modules.json`` is a sentence-transformers model. st-prune cuts it when its first module
is a ``Transformer`` over a decoder LLM and every module after it is a built-in ``Pooling``, ``Dense`` or
``Normalize`` (the types a plain ``SentenceTransformer(path)`` loads without ``trust_remote_code``). The cut keeps
what makes the model itself: those modules with their weights, its prompts and default prompt, its similarity
function, its tokenizer as saved (padding side, an EOS-appending post-processor) and its max sequence length.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from st_prune.errors import StPruneError

MODULES_JSON = "modules.json"
MODEL_CONFIG_JSON = "config_sentence_transformers.json"
TRANSFORMER_CONFIG_JSON = "sentence_bert_config.json"
#: Modules a cut keeps after the Transformer, by class name (``modules.json`` spells them with their legacy
#: ``sentence_transformers.models.X`` path or with ST 6's own module path).
HEAD_TYPES = ("Pooling", "Dense", "Normalize")
#: The ST 6 text modality that means "plain text through forward", the only one an export can express.
PLAIN_TEXT_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


@dataclass
class EmbedderLayout:
    """The parts of a sentence-transformers model st-prune keeps, as found in its files."""

    reference: str  #: the folder or Hub id as given
    transformer_dir: str  #: local folder of the first module (config.json, weights, tokenizer)
    transformer_config: dict[str, Any]  #: its sentence_bert_config.json
    heads: list[tuple[str, str]]  #: (class name, subfolder) of each module after the Transformer
    model_config: dict[str, Any] = field(default_factory=dict)  #: config_sentence_transformers.json

    @property
    def prompts(self) -> dict[str, str]:
        return dict(self.model_config.get("prompts") or {})

    @property
    def default_prompt_name(self) -> str | None:
        return self.model_config.get("default_prompt_name")

    @property
    def similarity_fn_name(self) -> str | None:
        return self.model_config.get("similarity_fn_name")

    @property
    def pooling_mode(self) -> str | None:
        """The Pooling module's mode as ST 6 names it (``lasttoken``, ``mean``, ``weightedmean``, ...)."""
        for kind, subfolder in self.heads:
            if kind == "Pooling":
                from sentence_transformers.sentence_transformer.modules import Pooling

                config = Pooling.load_config(self.reference, subfolder=subfolder)
                mode = config.get("pooling_mode")
                return mode[0] if isinstance(mode, (list, tuple)) and len(mode) == 1 else mode
        return None


def is_sentence_transformer(reference: str | os.PathLike) -> bool:
    """True when ``reference`` (a folder or Hub id) holds a ``modules.json``; a ``.gguf`` file never does."""
    reference = str(reference)
    if reference.lower().endswith(".gguf"):
        return False
    folder = Path(os.path.expanduser(reference))
    if folder.is_dir():
        return (folder / MODULES_JSON).is_file()
    from sentence_transformers.util import load_file_path

    try:
        return load_file_path(reference, MODULES_JSON) is not None
    except Exception:  # noqa: BLE001 - an unreachable Hub or a bad id: the LLM loader reports it in its own words
        return False


def read_embedder(reference: str | os.PathLike) -> EmbedderLayout:
    """The layout of the sentence-transformers model at ``reference``, refused unless st-prune can cut it."""
    from sentence_transformers.util import load_dir_path, load_file_path

    reference = str(reference)
    with open(load_file_path(reference, MODULES_JSON), encoding="utf-8") as handle:
        modules = json.load(handle)
    if not isinstance(modules, list) or not modules:
        raise StPruneError(f"{reference}/{MODULES_JSON} lists no modules; pass a sentence-transformers model folder")
    model_config_path = load_file_path(reference, MODEL_CONFIG_JSON)
    model_config: dict[str, Any] = {}
    if model_config_path is not None:
        with open(model_config_path, encoding="utf-8") as handle:
            model_config = json.load(handle)
    model_type = model_config.get("model_type", "SentenceTransformer")
    if model_type != "SentenceTransformer":
        raise StPruneError(
            f"{reference} is a {model_type}, not a SentenceTransformer embedder; st-prune cuts embedding models"
        )
    first = modules[0]
    if _class_name(first.get("type")) != "Transformer":
        raise StPruneError(
            f"the first module of {reference} is {first.get('type')!r}, not a Transformer over a decoder LLM; "
            "st-prune cuts sentence-transformers models whose first module is a Transformer (e.g. Qwen3-Embedding)"
        )
    heads = []
    for entry in modules[1:]:
        kind = _class_name(entry.get("type"))
        if kind not in HEAD_TYPES or not str(entry.get("type", "")).startswith("sentence_transformers."):
            raise StPruneError(
                f"module {entry.get('name', '?')} of {reference} is {entry.get('type')!r}; st-prune keeps only "
                f"{', '.join(HEAD_TYPES)} after the Transformer (the types plain SentenceTransformer(path) loads)"
            )
        heads.append((kind, entry.get("path", "")))
    subfolder = first.get("path", "")
    transformer_dir = load_dir_path(reference, subfolder) if not os.path.isdir(reference) else None
    transformer_dir = transformer_dir or os.path.join(os.path.expanduser(reference), subfolder)
    config_path = os.path.join(transformer_dir, TRANSFORMER_CONFIG_JSON)
    transformer_config: dict[str, Any] = {}
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as handle:
            transformer_config = json.load(handle)
    modality = transformer_config.get("modality_config")
    if modality is not None and modality != PLAIN_TEXT_MODALITY:
        raise StPruneError(
            f"the Transformer of {reference} reads text through {modality!r}; st-prune cuts models that run plain "
            f"text through forward ({PLAIN_TEXT_MODALITY}); save the model with that modality_config first"
        )
    return EmbedderLayout(reference, transformer_dir, transformer_config, heads, model_config)


def load_heads(layout: EmbedderLayout) -> list[nn.Module]:
    """The modules after the Transformer, loaded with their own ``load`` (weights included)."""
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
    )

    classes = {"Pooling": Pooling, "Dense": Dense, "Normalize": Normalize}
    return [classes[kind].load(layout.reference, subfolder=subfolder) for kind, subfolder in layout.heads]


def column_prompts(prompts: dict[str, str] | None) -> dict[str, str] | None:
    """Trainer-style column prompts from an embedder's own prompts: ``query`` on anchors, ``document`` (or
    ``passage``) on positives and negatives, so the scan and training see texts the way ``encode_query`` and
    ``encode_document`` embed them. ``None`` when the model has neither prompt (or only empty ones)."""
    prompts = prompts or {}
    query = prompts.get("query")
    document = prompts.get("document", prompts.get("passage"))
    mapped = {
        column: prompt
        for column, prompt in (("anchor", query), ("positive", document), ("negative", document))
        if prompt
    }
    return mapped or None


def embedder_prompts(model: str | os.PathLike, data: Any, prompts: Any) -> Any:
    """The prompts to scan, rank or train ``data`` with: the data's own (an instruction column, an E5 mix), else, for a
    sentence-transformers embedder, its own query/document prompts on anchors/documents (``column_prompts``), so the
    texts are embedded the way that model embeds them. Read from its files, before any weights load."""
    if prompts is not None or "instruction" in (getattr(data, "column_names", None) or []):
        return prompts
    if not is_sentence_transformer(model):
        return None
    return column_prompts(read_embedder(model).prompts)


def embedder_instruction_template(model: str | os.PathLike) -> str:
    """The instruction format of ``model`` (``st_prune.prompt_format.instruction_template``), read from its files
    before any weights load: a trained embedder's own (Qwen3-Embedding's ``Instruct: ...\\nQuery:``), else st-prune's."""
    from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE, instruction_template

    if not is_sentence_transformer(model):
        return QUERY_PROMPT_TEMPLATE
    return instruction_template(read_embedder(model).prompts)


def _class_name(module_type: Any) -> str:
    return str(module_type or "").rsplit(".", 1)[-1]
