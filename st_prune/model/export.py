"""The folder a user downloads: merged weights, only the kept layers, built-in module types only.

``export_model`` writes a SentenceTransformer folder that loads with plain ``SentenceTransformer(path)``
(sentence-transformers 5.x and 6.x, no st_prune, no trust_remote_code):

- LoRA adapters are merged into the weights (a save with adapters attached would store only the
  adapter on top of the *unpruned* base);
- every module is saved under its legacy built-in type name (``sentence_transformers.models.*``),
  which both 5.x and 6.x resolve, and module configs are written in the keys both versions read;
- the folder is written next to its destination and moved into place only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.dense import Dense
from sentence_transformers.base.modules.normalize import Normalize
from sentence_transformers.base.modules.transformer import Transformer
from sentence_transformers.sentence_transformer.modules import Pooling

from st_prune.errors import StPruneError
from st_prune.util import ownership
from st_prune.util.local_only import keep_card_local
from st_prune.util.staging import new_staging_dir, remove_legacy_deploy_staging

# ST 6 class -> name both ST 5.x and 6.x import.
LEGACY_TYPES: dict[type, str] = {
    Transformer: "sentence_transformers.models.Transformer",
    Pooling: "sentence_transformers.models.Pooling",
    Normalize: "sentence_transformers.models.Normalize",
    Dense: "sentence_transformers.models.Dense",  # kept from a trained embedder (st_prune.model.embedder)
}
# The Dense keys ST 5.x's Dense(**config) accepts; it fails on any other key.
LEGACY_DENSE_KEYS = ("in_features", "out_features", "bias", "activation_function")

# ST 6 Pooling modes -> the boolean keys ST 5.x reads (ST 6 converts them back on load).
LEGACY_POOLING_KEYS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}

# What the Transformer module must be pinned to for the legacy config (no modality keys) to mean the same.
PLAIN_TEXT_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


def legacy_type(module: torch.nn.Module) -> str:
    for cls, name in LEGACY_TYPES.items():
        if isinstance(module, cls):
            return name
    raise StPruneError(
        f"cannot export a {type(module).__name__} module as a built-in sentence-transformers type; "
        "exported models may contain only Transformer/TruncatedLLM, Pooling, Dense and Normalize modules"
    )


def merge_adapters(model: SentenceTransformer) -> bool:
    """Merge any PEFT LoRA adapters of the first module into its weights, in place. True if there were any."""
    transformer = model[0]
    inner = transformer.model
    if hasattr(inner, "merge_and_unload"):  # a peft.PeftModel
        transformer.model = inner.merge_and_unload()
        return True
    return False


def _check_exportable(model: SentenceTransformer) -> None:
    for module in model:
        legacy_type(module)
        if isinstance(module, Dense) and (
            module.use_residual or {module.module_input_name, module.module_output_name} != {"sentence_embedding"}
        ):
            raise StPruneError(
                "cannot export a Dense module with a residual or other input/output names: sentence-transformers 5.x "
                "cannot load it; exported Dense modules map sentence_embedding to itself"
            )
    first = model[0]
    if not isinstance(first, Transformer):
        raise StPruneError("the first module must be a TruncatedLLM/Transformer to export the model")
    if first.modality_config != PLAIN_TEXT_MODALITY or first.module_output_name != "token_embeddings":
        raise StPruneError(
            "exported models run text through the model's forward (no chat template); build the module with "
            f"modality_config={PLAIN_TEXT_MODALITY} and module_output_name='token_embeddings'"
        )


def _rewrite_legacy_configs(model: SentenceTransformer, folder: Path) -> None:
    """Module configs in the keys both ST 5.x and 6.x read; modules.json with legacy type names."""
    modules_json = json.loads((folder / "modules.json").read_text())
    for entry, module in zip(modules_json, model):
        entry["type"] = legacy_type(module)
        module_folder = folder / entry["path"]
        if isinstance(module, Transformer):
            # Without modality keys, ST 6 falls back to plain-text forward -> last_hidden_state, the pinned config.
            config = {"max_seq_length": module.max_seq_length, "do_lower_case": module.do_lower_case}
            (module_folder / "sentence_bert_config.json").write_text(json.dumps(config, indent=2))
            if module.tokenizer is not None and module.tokenizer.padding_side == "left":
                # A trained embedder that pads on the left (Qwen3-Embedding) keeps it; transformers saves the side
                # only when it was a constructor argument, and both 4.x and 5.x read it from tokenizer_config.json.
                _set_tokenizer_config(module_folder / "tokenizer_config.json", padding_side="left")
        elif isinstance(module, Pooling):
            modes = (module.pooling_mode,) if isinstance(module.pooling_mode, str) else tuple(module.pooling_mode)
            config: dict[str, Any] = {"word_embedding_dimension": module.embedding_dimension}
            config.update({key: mode in modes for mode, key in LEGACY_POOLING_KEYS.items()})
            config["include_prompt"] = module.include_prompt
            (module_folder / "config.json").write_text(json.dumps(config, indent=2))
        elif isinstance(module, Dense):
            saved = json.loads((module_folder / "config.json").read_text())
            config = {key: saved[key] for key in LEGACY_DENSE_KEYS if key in saved}
            (module_folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "modules.json").write_text(json.dumps(modules_json, indent=2))
    _rewrite_tokenizer_class(folder / "tokenizer_config.json")
    _add_legacy_rope_keys(folder / "config.json")


def _set_tokenizer_config(tokenizer_config_path: Path, **values: Any) -> None:
    config = json.loads(tokenizer_config_path.read_text()) if tokenizer_config_path.is_file() else {}
    config.update(values)
    tokenizer_config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False))


def _add_legacy_rope_keys(config_path: Path) -> None:
    """transformers 5 keeps RoPE settings in ``rope_parameters``; 4.x (under ST 5.x) reads ``rope_theta`` and
    ``rope_scaling`` and would silently fall back to its default theta. Write both spellings."""
    config = json.loads(config_path.read_text())
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict) or "rope_theta" not in rope:
        return
    config.setdefault("rope_theta", rope["rope_theta"])
    if rope.get("rope_type", "default") != "default":
        config.setdefault("rope_scaling", {key: value for key, value in rope.items() if key != "rope_theta"})
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


def _rewrite_tokenizer_class(tokenizer_config_path: Path) -> None:
    """transformers 5 names its generic fast tokenizer ``TokenizersBackend``; 4.x (under ST 5.x) only
    knows the alias ``PreTrainedTokenizerFast``, which 5.x still resolves to the same class."""
    if not tokenizer_config_path.is_file():
        return
    config = json.loads(tokenizer_config_path.read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        tokenizer_config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False))


def weight_bytes(folder: str | Path) -> int:
    """Bytes of tensor data in a folder's safetensors files (headers excluded)."""
    from st_prune.util.safetensors_header import data_bytes, tensors

    return sum(data_bytes(entry) for _, entry in tensors(sorted(Path(folder).glob("*.safetensors"))))


def prepare_output_dir(output: str | Path, overwrite: bool) -> Path:
    """The real folder to write the export to, checked before any long work starts.

    A non-empty destination needs ``overwrite``, and ``overwrite`` replaces only what st-prune wrote there
    (``st_prune.util.ownership``): an earlier export's files, as written. Files it did not write (notes, experiments)
    stay beside the new export; a folder holding none of st-prune's files, or one of them edited since, is refused.
    Refused, with or without ``overwrite``: the current folder or one above it, the home folder or one above it, a
    filesystem root or mount point. A symlinked ``output`` is followed: the folder it points to is checked and
    written by the same rules, and the link itself is kept (so it points to the new export).
    """
    given = Path(output).expanduser()
    try:
        # Resolved so that ".", "a/b/.." or a link cannot hide which folder is replaced, and so that the staging
        # folder (a sibling of the real destination) never lies inside it.
        destination = given.resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
        raise StPruneError(f"cannot resolve {given} ({error}); pass a plain folder path as --output") from None
    _refuse_protected_destination(given, destination)
    if destination.exists() and not destination.is_dir():
        raise FileExistsError(f"{given} exists and is not a folder; choose another --output")
    if destination.is_dir() and any(destination.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{given} is not empty; pass --overwrite (overwrite=True) to replace an earlier export of st-prune's "
                "there (nothing else is replaced), or choose another folder"
            )
        _check_overwritable(given, destination)
    return destination


def _check_overwritable(given: Path, destination: Path) -> None:
    """``--overwrite`` on a non-empty folder: it holds st-prune's export, and none of its files was edited since."""
    recorded = ownership.read_record(destination)["files"]
    if not any(ownership.owner(destination, name) for name in recorded):
        raise StPruneError(
            f"{given} holds no export st-prune wrote (no file there is recorded in its {ownership.MANIFEST}), and "
            "--overwrite replaces only st-prune's own files; choose another --output or move those files away yourself"
        )
    changed = [
        name for name in recorded if os.path.lexists(destination / name) and not ownership.owner(destination, name)
    ]
    if changed:
        raise StPruneError(
            f"{given / changed[0]} was changed since st-prune wrote it, and --overwrite never replaces your edits; "
            "move it away (or choose another --output)"
        )


def _refuse_protected_destination(given: Path, destination: Path) -> None:
    """Folders whose replacement would delete what st-prune did not write, whatever they hold."""
    new_folder = f"name a new folder such as {given / 'my-encoder'}"
    cwd = Path.cwd().resolve()
    if destination == cwd or destination in cwd.parents:
        raise StPruneError(
            f"{given} is the current folder or one above it and the export replaces its whole destination; {new_folder}"
        )
    home = Path.home().resolve()
    if destination == home or destination in home.parents:
        raise StPruneError(
            f"{given} is the home folder or one above it and the export replaces its whole destination; {new_folder}"
        )
    if destination.parent == destination or os.path.ismount(destination):
        raise StPruneError(
            f"{given} is a filesystem root or mount point and the export replaces its whole destination; {new_folder}"
        )


def export_model(
    model: SentenceTransformer,
    output: str | Path,
    *,
    overwrite: bool = False,
    create_model_card: bool = True,
    extra_files: dict[str, str | bytes] | None = None,
) -> Path:
    """Write the user-facing, vanilla-loadable folder for ``model`` (adapters merged) and return its path.

    The folder is assembled in a temporary sibling and renamed into place, so a failure leaves nothing behind.
    ``overwrite`` replaces only the files st-prune wrote there; see ``prepare_output_dir`` for what is refused.
    The folder's ``.st-prune-files.json`` records what was written (``st_prune.util.ownership``).
    """
    given = Path(output).expanduser()
    output = prepare_output_dir(given, overwrite)
    _check_exportable(model)
    merge_adapters(model)
    keep_card_local(model)  # saving builds the card: no Hub look-up of a local base model's folder name
    staging = new_staging_dir(output)  # also removes what an export killed earlier left beside ``output``
    try:
        model.save(str(staging), create_model_card=create_model_card)
        _rewrite_legacy_configs(model, staging)
        for name, content in (extra_files or {}).items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
        remove_legacy_deploy_staging(output)  # an older deploy's leftovers: never part of the new export
        # All of st-prune's earlier files go (a stale onnx/ would not match the new weights); the user's stay.
        ownership.install(
            staging,
            output,
            by="export",
            clear=("",),
            overwrite=overwrite,
            fix="move it away or choose another --output",
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return given
