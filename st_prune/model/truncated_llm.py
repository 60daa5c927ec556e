"""`TruncatedLLM`: a sentence-transformers module that keeps the first k decoder layers of an LLM.

It is ST's own ``Transformer`` module with three things done at construction time:

1. the config is cut to k layers *before* the weights load, so dropped layers are never materialised
   (transformers skips their checkpoint tensors) and every per-layer config list matches k;
2. GGUF files load dequantized and become saveable like any other checkpoint;
3. the tokenizer is set up for embedding: a pad token, right padding, EOS appended when pooling reads
   the last token (inside tokenizer.json, so plain ST reproduces it), and chat templates never touch
   plain text.

A saved ``TruncatedLLM`` is a plain ``Transformer`` folder: see ``st_prune.model.export``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.transformer import Transformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
from tokenizers import processors
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging

from st_prune.errors import ModelUnavailable, StPruneError
from st_prune.model import architectures
from st_prune.model.gguf_check import check_gguf_complete
from st_prune.util.file_integrity import check_model_weights
from st_prune.util.local_only import keep_card_local
from st_prune.util.optional import require
from st_prune.util.staging import commit_staging, new_staging_dir

logger = logging.getLogger(__name__)

PoolingName = Literal["weighted_mean", "last_token", "mean"]
# Our pooling names -> sentence-transformers' Pooling modes.
from st_prune.paper import POOLING_MODES  # noqa: E402  (CLI pooling names -> ST Pooling modes)

# Text goes straight through `forward`: ST 6 would otherwise route plain strings through a
# tokenizer's chat template, which breaks prompt exclusion and changes the embedding.
TEXT_MODALITY_CONFIG = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
MODULE_OUTPUT_NAME = "token_embeddings"

# Written into config.json (a harmless extra key) so a cut model remembers what it was cut from.
PROVENANCE_KEY = "st_prune"


def resolve_source(model_name_or_path: str | os.PathLike) -> str:
    """A folder or Hub id to load from; a ``.gguf`` file is dequantized once into a cached folder."""
    reference = str(model_name_or_path)
    if reference.lower().endswith(".gguf"):
        return str(dequantized_gguf_folder(reference))
    if not os.path.exists(os.path.expanduser(reference)) and not _is_hub_id(reference):
        raise StPruneError(
            f"model not found: {reference} is neither an existing folder or .gguf file nor a Hub id (org/name); "
            "check the path"
        )
    if os.path.isdir(os.path.expanduser(reference)):
        check_model_weights(os.path.expanduser(reference))  # one line for a cut-short copy, not a SafetensorError
    return reference


def _is_hub_id(reference: str) -> bool:
    """True for what the Hub accepts as a repo id (``org/name`` or ``name``); paths like ``./x`` are not."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(reference)
    except HFValidationError:
        return False
    return True


def _hub_offline() -> bool:
    from huggingface_hub import constants

    # The constant is read at import; the variable may have been set later (tests, notebooks).
    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def gguf_cache_root() -> Path:
    return Path(os.environ.get("ST_PRUNE_CACHE", Path.home() / ".cache" / "st_prune")) / "gguf"


def dequantized_gguf_folder(gguf_path: str | os.PathLike) -> Path:
    """Dequantize a GGUF file into a float32 transformers folder, once per file (keyed by name, size, mtime).

    transformers re-parses and dequantizes the whole file for the config, the tokenizer and the weights
    (about a minute for a 135M model on 2 cores); the cached folder loads in seconds.
    """
    path = Path(gguf_path).expanduser()
    if not path.is_file():
        raise StPruneError(f"GGUF file not found: {gguf_path}; pass the path of an existing .gguf file")
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = gguf_cache_root() / f"{path.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    # A truncated download otherwise fails a minute later inside transformers' parser, looking like a bad format.
    check_gguf_complete(path)
    folder, name = str(path.parent.resolve()), path.name
    config = load_base_config(folder, gguf_file=name)
    logger.info("Dequantizing %s once into %s", name, target)
    with _quiet_transformers():
        model = AutoModel.from_pretrained(folder, gguf_file=name, config=config, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    _make_saveable(model)
    staging = new_staging_dir(target)  # also removes what a dequantization killed earlier left in the cache
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        commit_staging(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():  # another process may have won the race
            raise
    return target


def load_base_config(model_name_or_path: str, gguf_file: str | None = None, **config_kwargs: Any) -> PretrainedConfig:
    """The base model's config, with clear errors for unreadable GGUF files and non-decoder models.

    For a sentence-transformers model, the config of its first module (the Transformer, wherever it is saved)."""
    from st_prune.model import embedder

    if gguf_file is None and embedder.is_sentence_transformer(model_name_or_path):
        model_name_or_path = embedder.read_embedder(model_name_or_path).transformer_dir
    if gguf_file is not None:
        # transformers' own message ("Please install torch and gguf>=0.10.0") is a traceback without the command.
        require("gguf", f"reading {gguf_file}")
        config_kwargs.setdefault("gguf_file", gguf_file)
    try:
        config = AutoConfig.from_pretrained(model_name_or_path, **config_kwargs)
    except OSError as error:
        # transformers reports a missing folder, an unknown Hub id and an unreachable Hub as a long OSError.
        if gguf_file is not None or os.path.isdir(model_name_or_path):
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise StPruneError(
                f"cannot read the model config in {model_name_or_path} ({first_line}); pass a folder holding the "
                "model's config.json and weights, a .gguf file or a Hub id"
            ) from None
        if not _is_hub_id(model_name_or_path):  # a path that is not there: no cache or Hub can supply it
            raise StPruneError(
                f"model not found: {model_name_or_path} is neither an existing folder or .gguf file nor a Hub id "
                "(org/name); check the path"
            ) from None
        if _hub_offline():
            raise ModelUnavailable(
                f"model {model_name_or_path} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1; download it "
                f"first with `hf download {model_name_or_path}` or pass a local folder"
            ) from None
        raise ModelUnavailable(
            f"model {model_name_or_path} not found: no such local folder, and the Hub has no such model or cannot be "
            "reached; check the id (and `hf auth login` for gated models) or pass a local folder"
        ) from None
    except (ValueError, KeyError, NotImplementedError) as error:
        if gguf_file is None:
            if os.path.isdir(model_name_or_path) and not os.path.isfile(
                os.path.join(model_name_or_path, "config.json")
            ):
                raise StPruneError(
                    f"{model_name_or_path} has no config.json; pass a transformers model folder, a .gguf file or a Hub id"
                ) from None
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StPruneError(
            f"transformers cannot read or dequantize {gguf_file} ({first_line}); use a GGUF quantization "
            "transformers supports (F32, F16, BF16, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, Q8_0, ...) or the original checkpoint"
        ) from error
    architectures.check_is_decoder(config)
    return config


class TruncatedLLM(Transformer):
    """A decoder LLM cut to its first ``layers`` decoder layers (plus embeddings and final norm).

    Args:
        model_name_or_path: Hub id, local folder, or path to a ``.gguf`` file (loaded dequantized); or a
            sentence-transformers model (a ``modules.json``) whose first module is a Transformer over a decoder LLM:
            that module is cut, with its own tokenizer as saved (padding side, EOS handling), max sequence length
            and keyword arguments (``st_prune.model.embedder``).
        layers: number of decoder layers to keep, 1 <= layers <= L.
        fraction: share of layers to drop, 0 <= fraction < 1; keeps ``int(L * (1 - fraction))`` (the paper's rule).
            With neither ``layers`` nor ``fraction`` the model keeps all L layers.
        append_eos: append the EOS token to every text (needed for ``last_token`` pooling). Saved in tokenizer.json.
        max_seq_length: truncate inputs to this many tokens (None keeps the sentence-transformers model's own, else
            the tokenizer's own limit).
        Other keyword arguments are those of ``sentence_transformers...Transformer``.
    """

    def __init__(
        self,
        model_name_or_path: str,
        *,
        layers: int | None = None,
        fraction: float | None = None,
        append_eos: bool | None = None,
        max_seq_length: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        modality_config: dict[str, Any] | None = None,
        module_output_name: str | None = None,
        **transformer_kwargs: Any,
    ) -> None:
        source = resolve_source(model_name_or_path)
        from st_prune.model import embedder

        # A trained embedder: cut its Transformer as that model loads it, not as a bare LLM (issue 25.1).
        self.embedder_layout = embedder.read_embedder(source) if embedder.is_sentence_transformer(source) else None
        if self.embedder_layout is not None:
            own = self.embedder_layout.transformer_config
            source = self.embedder_layout.transformer_dir
            model_kwargs = {**(own.get("model_kwargs") or own.get("model_args") or {}), **(model_kwargs or {})}
            processor_kwargs = {
                **(own.get("processor_kwargs") or own.get("tokenizer_args") or {}),
                **(processor_kwargs or {}),
            }
            config_kwargs = {**(own.get("config_kwargs") or own.get("config_args") or {}), **(config_kwargs or {})}
            max_seq_length = max_seq_length if max_seq_length is not None else own.get("max_seq_length")
            transformer_kwargs.setdefault("do_lower_case", bool(own.get("do_lower_case", False)))
        config_kwargs = dict(config_kwargs or {})
        config = load_base_config(source, **config_kwargs)
        total = architectures.num_layers(config)
        kept = architectures.layers_to_keep(total, layers, fraction)

        provenance = dict(getattr(config, PROVENANCE_KEY, None) or {})
        provenance.setdefault("base_model", _public_reference(model_name_or_path))
        provenance.setdefault("num_original_layers", total)
        if self.embedder_layout is not None:
            provenance["cut_from"] = {
                "kind": "sentence-transformers",
                "model": _public_reference(model_name_or_path),
                "num_layers": total,
            }
        overrides = architectures.cut_config_overrides(config, kept) if kept != total else {}
        if "text_config" in config.to_dict() and overrides:
            raise StPruneError(
                f"{config.model_type!r} is a multimodal wrapper; load its text model (e.g. the *_text checkpoint) instead"
            )

        with _quiet_transformers():  # the skipped layers' tensors would each be reported as "unexpected"
            super().__init__(
                source,
                model_kwargs=model_kwargs,
                processor_kwargs=processor_kwargs,
                config_kwargs={**config_kwargs, **overrides},
                modality_config=modality_config or TEXT_MODALITY_CONFIG,
                module_output_name=module_output_name or MODULE_OUTPUT_NAME,
                max_seq_length=max_seq_length,
                **transformer_kwargs,
            )
        loaded = len(architectures.decoder_layers(self.auto_model))
        if loaded != kept:  # pragma: no cover - guards against a transformers loader that ignores the config
            architectures.cut_model(self.auto_model, kept)
        setattr(self.config, PROVENANCE_KEY, provenance)
        vocab_size = self.auto_model.get_input_embeddings().num_embeddings
        # An embedder's tokenizer is part of what the model is (its padding side, its EOS post-processor): kept.
        setup_tokenizer(
            self.tokenizer,
            vocab_size=vocab_size,
            append_eos=bool(append_eos),
            padding_side=None if self.embedder_layout is not None else "right",
        )

    # --- facts about the cut -------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """Decoder layers kept."""
        return len(architectures.decoder_layers(self.auto_model))

    @property
    def num_original_layers(self) -> int:
        """Decoder layers of the base model before any cut."""
        return int(self.provenance.get("num_original_layers", self.num_layers))

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(getattr(self.config, PROVENANCE_KEY, None) or {})

    def cut(self, layers: int) -> TruncatedLLM:
        """Drop decoder layers in place so that ``layers`` remain; returns self."""
        kept = architectures.layers_to_keep(self.num_layers, layers)
        architectures.cut_model(self.auto_model, kept)
        return self

    def __repr__(self) -> str:
        return (
            f"TruncatedLLM(layers={self.num_layers}/{self.num_original_layers}, "
            f"architecture={type(self.auto_model).__name__}, max_seq_length={self.max_seq_length})"
        )


@contextmanager
def _quiet_transformers():
    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(previous)


def _public_reference(model_name_or_path: str | os.PathLike) -> str:
    """A base-model reference safe to publish: Hub ids as they are, local paths reduced to their name."""
    reference = str(model_name_or_path)
    if os.path.exists(reference):
        return Path(reference).name
    return reference


def _make_saveable(model: torch.nn.Module) -> None:
    """A GGUF-loaded model is a dequantized plain model; drop the quantizer so save_pretrained works."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    model.is_quantized = False
    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    if not getattr(config, "architectures", None):
        config.architectures = [type(model).__name__]


def setup_tokenizer(
    tokenizer: PreTrainedTokenizerBase | None, *, vocab_size: int, append_eos: bool, padding_side: str | None = "right"
) -> None:
    """Pad token (EOS when missing), ``padding_side`` (None keeps the tokenizer's), and EOS appended when the pooling
    needs it."""
    if tokenizer is None:
        raise StPruneError("the model has no tokenizer; st-prune needs a text tokenizer beside the weights")
    # A pad token the embedding matrix has no row for (some tokenizer classes add a default one) is as bad as none.
    if tokenizer.pad_token is None or tokenizer.pad_token_id is None or tokenizer.pad_token_id >= vocab_size:
        if tokenizer.eos_token is None:
            raise StPruneError("the tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token first")
        tokenizer.pad_token = tokenizer.eos_token
    # ST's Pooling handles both sides; one fixed side keeps saved models predictable.
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    if append_eos:
        append_eos_token(tokenizer)


def append_eos_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Make the tokenizer itself end every text with EOS, so a plain ST load after save does too."""
    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    if eos is None:
        raise StPruneError("last_token pooling needs an EOS token, and this tokenizer has none")
    with_specials = tokenizer("probe")["input_ids"]
    if with_specials and with_specials[-1] == eos_id:
        return
    plain = tokenizer("probe", add_special_tokens=False)["input_ids"]
    prefix = with_specials[: len(with_specials) - len(plain)]
    if isinstance(getattr(type(tokenizer), "add_eos_token", None), property) and prefix in (
        [],
        [tokenizer.bos_token_id],
    ):
        # transformers' own mechanism: the flags are saved in tokenizer_config.json and rebuild the
        # post-processor on load, so they must describe the whole template (BOS included).
        object.__setattr__(tokenizer, "_add_bos_token", bool(prefix))
        tokenizer.add_eos_token = True
    else:
        prefix_tokens = tokenizer.convert_ids_to_tokens(prefix)
        lead = " ".join(f"{token}:0" for token in prefix_tokens)
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{lead} $A:0 {eos}:0".strip(),
            pair=f"{lead} $A:0 {eos}:0 $B:1 {eos}:1".strip(),
            special_tokens=list(dict(zip(prefix_tokens, prefix)).items()) + [(eos, eos_id)],
        )
    if tokenizer("probe")["input_ids"] != prefix + plain + [eos_id]:
        raise StPruneError(
            f"could not make {type(tokenizer).__name__} append {eos!r}; use mean or weighted_mean pooling instead"
        )


def encoder_from_llm(
    model_name_or_path: str,
    *,
    layers: int | None = None,
    fraction: float | None = None,
    pooling: PoolingName | None = None,
    max_seq_length: int | None = None,
    normalize: bool | None = None,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    device: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    dtype: str | None = None,
    **module_kwargs: Any,
) -> SentenceTransformer:
    """A ready ``SentenceTransformer``: ``TruncatedLLM`` + ``Pooling`` (prompt tokens excluded) + ``Normalize``.

    From a base LLM: ``pooling`` defaults to ``weighted_mean``, ``max_seq_length`` to 512 and ``normalize`` to True.
    From a trained sentence-transformers embedder (a folder or Hub id with ``modules.json``, see
    ``st_prune.model.embedder``) the cut keeps that model's own pooling, Dense and Normalize modules, prompts, default
    prompt, similarity function, tokenizer and max sequence length; ``pooling``, ``normalize``, ``prompts`` and
    ``default_prompt_name`` must then be left unset (or name what the model already has), ``max_seq_length``
    may change the model's limit.

    ``dtype`` (``auto``, ``bfloat16``, ``float16``, ``float32``) is the dtype the weights load in, and so the dtype
    an export saves; ``None``/``auto`` keeps the checkpoint's own (see ``st_prune.model.dtypes``).

    >>> model = encoder_from_llm("Qwen/Qwen2-7B-Instruct", fraction=0.5, prompts={"query": "Instruct: ...\\nQuery: "})
    >>> small = encoder_from_llm("Qwen/Qwen3-Embedding-0.6B", layers=14)  # keeps its last-token pooling and prompts
    """
    if pooling is not None and pooling not in POOLING_MODES:
        raise StPruneError(f"pooling must be one of {', '.join(POOLING_MODES)}, got {pooling!r}")
    from st_prune.util.device import check_device

    check_device(device, "device")  # before minutes of loading, not at the final .to(device)
    if dtype is not None:
        from st_prune.model.dtype_names import model_kwargs_for

        model_kwargs = {**(model_kwargs or {}), **model_kwargs_for(dtype)}
    from st_prune.model import embedder

    source = resolve_source(model_name_or_path)
    if embedder.is_sentence_transformer(source):
        layout = embedder.read_embedder(source)  # refuses what cannot be cut before any weights load
        _check_embedder_options(
            layout, pooling=pooling, normalize=normalize, prompts=prompts, default_prompt_name=default_prompt_name
        )
        module = TruncatedLLM(
            source,
            layers=layers,
            fraction=fraction,
            max_seq_length=max_seq_length,
            model_kwargs=model_kwargs,
            **module_kwargs,
        )
        model = SentenceTransformer(
            modules=[module, *embedder.load_heads(layout)],
            prompts=layout.prompts or None,
            default_prompt_name=layout.default_prompt_name,
            similarity_fn_name=layout.similarity_fn_name,
            device=device,
        )
    else:
        pooling = pooling or "weighted_mean"
        module = TruncatedLLM(
            model_name_or_path,
            layers=layers,
            fraction=fraction,
            append_eos=pooling == "last_token",
            max_seq_length=512 if max_seq_length is None else max_seq_length,
            model_kwargs=model_kwargs,
            **module_kwargs,
        )
        modules: list[torch.nn.Module] = [
            module,
            Pooling(module.get_embedding_dimension(), pooling_mode=POOLING_MODES[pooling], include_prompt=False),
        ]
        if normalize is None or normalize:
            modules.append(Normalize())
        model = SentenceTransformer(
            modules=modules, prompts=prompts, default_prompt_name=default_prompt_name, device=device
        )
    # A local folder or GGUF file: its path must not be sent to the Hub as a base-model id when the card is built.
    keep_card_local(model, model_name_or_path)
    return model


def _check_embedder_options(layout: Any, **given: Any) -> None:
    """An embedder's cut is that model: options that would make it another model are refused, not ignored."""
    if given["pooling"] is not None and POOLING_MODES[given["pooling"]] != layout.pooling_mode:
        raise StPruneError(
            f"{layout.reference} is a sentence-transformers model with {layout.pooling_mode!r} pooling, and its cut "
            f"keeps it; leave out --pooling (pooling={given['pooling']!r})"
        )
    for name in ("normalize", "prompts", "default_prompt_name"):
        if given[name] is not None:
            raise StPruneError(
                f"{layout.reference} is a sentence-transformers model and its cut keeps its own modules and prompts; "
                f"leave {name} unset"
            )
