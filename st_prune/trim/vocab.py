"""Exact vocabulary trimming of a saved model folder: drop the embedding rows of tokens a corpus never uses.

Pruning layers leaves the embedding matrix whole, and in a small variant that matrix is most of the model
(Gemma-3-270M cut to 5 layers: ~168M of 196M parameters). ``trim_vocabulary`` keeps

- every added/special token, and every token id the configs or the post-processor refer to;
- the byte alphabet (byte-level BPE: the 256 byte characters; byte fallback: the ``<0xNN>`` tokens and the
  ASCII characters), so any text still tokenizes, into smaller pieces, never into ``<unk>``;
- every token the corpus uses (or the most frequent ones, up to ``vocab_size``), and the *merge closure* of
  each kept token: every intermediate token BPE builds on the way to it;

and drops every merge whose result or parts are gone. Why that is exact: BPE applies, within a word, the
lowest-ranked applicable merge again and again. The merges of a text whose final tokens were all kept only
ever produce those tokens' intermediates, which are kept, so every merge the original tokenizer applied is still
there; the trimmed merge list is a subset of the original with the same order, so no new merge can win.
The trimmed tokenizer therefore produces the same tokens for such a text, and the renumbered embedding rows
are the same vectors, so the model's output is unchanged. Any other text gets smaller pieces that are all in
the trimmed vocabulary (merges are only kept when their result is), so no id is ever out of range or wrong.

The folder's files are rewritten directly (``tokenizer.json`` through the ``tokenizers`` library's own JSON,
weights with ``safetensors``), so the result is a plain folder that vanilla sentence-transformers loads.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from st_prune.errors import StPruneError
from st_prune.util import ownership
from st_prune.util.model_folder import transformer_folder
from st_prune.util.staging import MARKER, new_staging_dir

#: Files read as tables (every string column is text); anything else is read as one text a line.
TABLE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}

#: Held-out texts for the "tokenization changed" share when no held-out file is given: this share of the
#: corpus, at most MAX_HELD_OUT texts. They are left out only of a second vocabulary built to measure the share
#: (texts that vocabulary never saw); the vocabulary that ships counts every corpus text, because the user named
#: them as texts the model will embed, and each must embed exactly as before.
HELD_OUT_SHARE = 0.1
MAX_HELD_OUT = 1000

BYTE_FALLBACK_TOKEN = re.compile(r"^<0x[0-9A-F]{2}>$")

# Names of weights whose first dimension is the vocabulary: input embeddings and (untied) output heads.
EMBEDDING_NAMES = ("embed_tokens.weight", "lm_head.weight", "wte.weight", "word_embeddings.weight")

REPORT_FILE = "trim.json"
CARD_HEADING = "## Vocabulary trimmed"


@dataclass
class TrimReport:
    """What a trim kept and what it saved; written to ``trim.json`` and summarised in the model card."""

    tokenizer: str  # "byte-level BPE" or "BPE with byte fallback"
    vocab_before: int
    vocab_after: int
    kept_special: int
    kept_alphabet: int
    kept_corpus: int
    kept_closure_only: int
    corpus_tokens_seen: int
    corpus_tokens_left_out: int
    corpus_texts: int
    vocab_size_requested: int | None
    min_frequency: int | None
    parameters_before: int
    parameters_after: int
    disk_bytes_before: int
    disk_bytes_after: int
    held_out_texts: int
    held_out_changed_share: float | None
    held_out_source: str
    verified_texts: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        changed = (
            "n/a"
            if self.held_out_changed_share is None
            else f"{100 * self.held_out_changed_share:.1f} % of {self.held_out_texts} held-out texts"
        )
        lines = [
            f"vocabulary {self.vocab_before:,} -> {self.vocab_after:,} tokens ({self.tokenizer}): "
            f"{self.kept_special} special, {self.kept_alphabet} byte alphabet, {self.kept_corpus:,} used by the "
            f"corpus, {self.kept_closure_only:,} merge intermediates",
            f"parameters {self.parameters_before / 1e6:.1f}M -> {self.parameters_after / 1e6:.1f}M; on disk "
            f"{self.disk_bytes_before / 1e6:.1f} MB -> {self.disk_bytes_after / 1e6:.1f} MB",
            f"tokenization changed for {changed}",
        ]
        return "\n".join(lines + self.notes)

    def card_section(self) -> str:
        changed = (
            "not measured (no held-out texts)"
            if self.held_out_changed_share is None
            else f"{100 * self.held_out_changed_share:.1f} % of {self.held_out_texts:,} held-out texts "
            f"({self.held_out_source})"
        )
        limit = (
            f"the most frequent, at most {self.vocab_size_requested:,} tokens in all"
            if self.vocab_size_requested
            else f"tokens used at least {self.min_frequency} times"
            if self.min_frequency
            else "every token it uses"
        )
        return "\n".join(
            [
                CARD_HEADING,
                "",
                f"The vocabulary was trimmed with `st-prune trim` to the tokens a corpus of {self.corpus_texts:,} texts "
                f"uses ({limit}), keeping every special token, the byte alphabet and every merge intermediate of a kept "
                "token. Texts made only of kept tokens tokenize and embed exactly as before; other texts are split into "
                "smaller pieces.",
                "",
                "| | before | after |",
                "|---|---|---|",
                f"| tokens | {self.vocab_before:,} | {self.vocab_after:,} |",
                f"| parameters | {self.parameters_before / 1e6:.1f}M | {self.parameters_after / 1e6:.1f}M |",
                f"| on disk | {self.disk_bytes_before / 1e6:.1f} MB | {self.disk_bytes_after / 1e6:.1f} MB |",
                "",
                f"Tokenization changed for {changed}.",
                "",
            ]
        )


# --------------------------------------------------------------------------------------------- corpus


def read_corpus(path: str | os.PathLike, flag: str = "--corpus") -> list[str]:
    """Texts of ``path``: every string column of a JSONL/JSON/CSV/Parquet file, else one text a line.
    Blank texts are skipped; none left is an error. ``flag`` is the option the file was given with."""
    path = Path(path)
    if not path.is_file():
        raise StPruneError(
            f"{flag} {path} not found; give {flag} a text file (one text a line) or a JSONL/CSV/Parquet file"
        )
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        try:
            texts = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise StPruneError(
                f"{flag} {path} is not UTF-8 text; give one text a line or a JSONL/CSV/Parquet file"
            ) from None
    else:
        texts = _table_texts(path, fmt)
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise StPruneError(
            f"{flag} {path} has no text; the trim keeps the tokens a corpus uses, so give it the "
            "texts the model will embed"
        )
    return texts


def _table_texts(path: Path, fmt: str) -> list[str]:
    import datasets

    if path.stat().st_size == 0:
        return []
    datasets.disable_progress_bars()  # one corpus file: a progress bar per split is noise
    try:
        table = datasets.load_dataset(fmt, data_files=str(path), split="train")
    except Exception as error:  # datasets raises many types for malformed files
        raise StPruneError(
            f"corpus {path} could not be read as {fmt} ({type(error).__name__}); check the file"
        ) from None
    columns = [
        name
        for name, feature in table.features.items()
        if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")
    ]
    if not columns:
        raise StPruneError(
            f"corpus {path} has no text (string) column; its columns are {', '.join(table.column_names) or 'none'}"
        )
    return [text for column in columns for text in table[column] if isinstance(text, str)]


def split_held_out(texts: Sequence[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """(the rest, held-out texts): HELD_OUT_SHARE of the texts, at most MAX_HELD_OUT, seeded. Used only to measure
    the "tokenization changed" share; the shipped vocabulary counts every text."""
    count = min(MAX_HELD_OUT, int(len(texts) * HELD_OUT_SHARE))
    if count == 0:
        return list(texts), []
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [t for i, t in enumerate(texts) if i not in held], [texts[i] for i in sorted(held)]


# ------------------------------------------------------------------------------------------ tokenizer


def _walk(node: Any) -> Iterable[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def tokenizer_family(tokenizer_json: dict, where: str = "tokenizer.json") -> str:
    """ "byte-level BPE" or "BPE with byte fallback"; any other tokenizer is refused in one line."""
    model = tokenizer_json.get("model") or {}
    kind = model.get("type", "unknown")
    if kind != "BPE":
        raise StPruneError(
            f"{where} holds a {kind} tokenizer; st-prune trim trims BPE tokenizers with merges (byte-level like "
            f"Llama-3/Qwen/SmolLM2, or byte fallback like Gemma/Mistral) exactly, and {kind} is not one of them"
        )
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise StPruneError(
            f"{where} is a BPE with word prefixes/suffixes; st-prune trim only trims byte-level "
            "BPE and BPE with byte fallback exactly"
        )
    if model.get("dropout"):
        raise StPruneError(f"{where} is a BPE with dropout (random tokenization); remove the dropout first")
    byte_level = any(node.get("type") == "ByteLevel" for node in _walk(tokenizer_json.get("pre_tokenizer")))
    if byte_level:
        return "byte-level BPE"
    if model.get("byte_fallback"):
        return "BPE with byte fallback"
    raise StPruneError(
        f"{where} is a BPE without byte-level pre-tokenization or byte fallback: characters of dropped tokens "
        "would become <unk>, so st-prune trim cannot trim it exactly"
    )


def _merge_pairs(merges: list) -> list[tuple[str, str]]:
    # tokenizers writes merges as [a, b] lists since 0.20 and as "a b" strings before.
    return [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ", 1)) for merge in merges]


def derivation(token: str, ranks: dict[tuple[str, str], int]) -> set[str]:
    """Every symbol BPE builds while merging ``token``'s characters: the lowest-ranked adjacent pair first,
    leftmost on ties (the order of tokenizers' ``Word::merge_all``). A token's in-text derivation is this one:
    merges inside its span never depend on what lies outside it."""
    symbols = list(token)
    seen = set(symbols)
    while len(symbols) > 1:
        best_rank, best_index = None, -1
        for index in range(len(symbols) - 1):
            rank = ranks.get((symbols[index], symbols[index + 1]))
            if rank is not None and (best_rank is None or rank < best_rank):
                best_rank, best_index = rank, index
        if best_rank is None:
            break
        merged = symbols[best_index] + symbols[best_index + 1]
        symbols[best_index : best_index + 2] = [merged]
        seen.add(merged)
    return seen


def _remap_post_processor(node: Any, new_id: dict[int, int]) -> None:
    """Special-token ids inside post-processors (TemplateProcessing, Roberta/Bert, nested Sequences)."""
    if isinstance(node, dict):
        if node.get("type") == "TemplateProcessing":
            for entry in node.get("special_tokens", {}).values():
                entry["ids"] = [new_id[i] for i in entry["ids"]]
        if node.get("type") in ("RobertaProcessing", "BertProcessing"):
            for key in ("sep", "cls"):
                if key in node:
                    node[key] = [node[key][0], new_id[node[key][1]]]
        for value in node.values():
            _remap_post_processor(value, new_id)
    elif isinstance(node, list):
        for value in node:
            _remap_post_processor(value, new_id)


def _post_processor_ids(node: Any) -> set[int]:
    ids: set[int] = set()
    for item in _walk(node):
        if item.get("type") == "TemplateProcessing":
            for entry in item.get("special_tokens", {}).values():
                ids.update(entry["ids"])
        if item.get("type") in ("RobertaProcessing", "BertProcessing"):
            ids.update(item[key][1] for key in ("sep", "cls") if key in item)
    return ids


def trim_tokenizer_json(tokenizer_json: dict, kept: Sequence[int]) -> dict:
    """``tokenizer_json`` with only the ``kept`` ids (renumbered densely in their old order) and the merges
    whose result and parts are all kept."""
    new_id = {old: new for new, old in enumerate(sorted(kept))}
    trimmed = copy.deepcopy(tokenizer_json)
    model = trimmed["model"]
    model["vocab"] = {token: new_id[old] for token, old in model["vocab"].items() if old in new_id}
    vocab = model["vocab"]
    merges = model.get("merges") or []
    model["merges"] = [
        merge
        for merge, (left, right) in zip(merges, _merge_pairs(merges))
        if left in vocab and right in vocab and left + right in vocab
    ]
    trimmed["added_tokens"] = [
        {**token, "id": new_id[token["id"]]} for token in trimmed.get("added_tokens", []) if token["id"] in new_id
    ]
    _remap_post_processor(trimmed.get("post_processor"), new_id)
    padding = trimmed.get("padding")
    if isinstance(padding, dict) and padding.get("pad_id") in new_id:
        padding["pad_id"] = new_id[padding["pad_id"]]
    return trimmed


# ------------------------------------------------------------------------------------------- selection


@dataclass
class Selection:
    kept: list[int]
    special: set[int]
    alphabet: set[int]
    corpus: set[int]
    corpus_seen: int
    corpus_left_out: int


def select_tokens(
    tokenizer_json: dict,
    family: str,
    counts: Counter,
    *,
    required: Iterable[int] = (),
    vocab_size: int | None = None,
    min_frequency: int | None = None,
    id_limit: int | None = None,
) -> Selection:
    """The ids to keep: specials + ``required`` + byte alphabet + (the most frequent) corpus tokens, each with
    its merge closure. With ``vocab_size`` the result never exceeds it (a token whose closure does not fit is
    left out); ``id_limit`` drops ids without an embedding row."""
    from tokenizers import pre_tokenizers

    model = tokenizer_json["model"]
    vocab: dict[str, int] = model["vocab"]
    token_of = {i: t for t, i in vocab.items()}
    added = {token["id"] for token in tokenizer_json.get("added_tokens", [])}
    for token in tokenizer_json.get("added_tokens", []):
        token_of.setdefault(token["id"], token["content"])
    special = added | set(required) | _post_processor_ids(tokenizer_json.get("post_processor"))
    if model.get("unk_token") in vocab:
        special.add(vocab[model["unk_token"]])
    if family == "byte-level BPE":
        alphabet = {vocab[c] for c in pre_tokenizers.ByteLevel.alphabet() if c in vocab}
    else:
        # The <0xNN> tokens, and the ASCII characters: without them a plain letter the corpus lacks would
        # fall back to its byte token, whose embedding row is not the letter's.
        alphabet = {i for t, i in vocab.items() if BYTE_FALLBACK_TOKEN.match(t) or (len(t) == 1 and ord(t) < 128)}
    if id_limit is not None:
        special = {i for i in special if i < id_limit}
    special = {i for i in special if i in token_of}
    alphabet -= special
    ranks = {pair: rank for rank, pair in enumerate(_merge_pairs(model.get("merges") or []))}

    def closure(token_id: int) -> set[int]:
        if token_id in added:  # added tokens are matched whole, before the model: no merges lead to them
            return {token_id}
        return {vocab[s] for s in derivation(token_of[token_id], ranks) if s in vocab} | {token_id}

    base = special | alphabet
    if vocab_size is not None and vocab_size < len(base):
        raise StPruneError(
            f"--vocab-size {vocab_size} is below the {len(special)} special tokens + {len(alphabet)}-token byte "
            f"alphabet every trimmed tokenizer keeps; give at least {len(base)}"
        )
    candidates = [
        i
        for i, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if n >= (min_frequency or 1) and i in token_of and (id_limit is None or i < id_limit)
    ]
    kept, corpus, left_out = set(base), set(), 0
    for token_id in candidates:
        if token_id in kept:
            corpus.add(token_id)
            continue
        needed = closure(token_id) - kept
        if vocab_size is not None and len(kept) + len(needed) > vocab_size:
            left_out += 1
            continue
        kept |= needed
        corpus.add(token_id)
    return Selection(sorted(kept), special, alphabet, corpus, len(counts), left_out + len(counts) - len(candidates))


# ------------------------------------------------------------------------------------------- the folder


def _weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def _parameter_count(model_dir: Path) -> int:
    from st_prune.util.safetensors_header import numel, tensors

    return sum(numel(entry) for _, entry in tensors(sorted(model_dir.rglob("*.safetensors"))))


def _disk_bytes(folder: Path) -> int:
    return sum(
        path.stat().st_size
        for path in folder.rglob("*")
        if path.is_file() and path.name not in (MARKER, ownership.MANIFEST)
    )


def _id_keys(config: dict) -> list[str]:
    return [
        key
        for key, value in config.items()
        if key.endswith(("_token_id", "_token_ids"))
        and value is not None
        and (isinstance(value, int) or (isinstance(value, list) and all(isinstance(v, int) for v in value)))
    ]


def _config_ids(config: dict) -> set[int]:
    ids: set[int] = set()
    for key in _id_keys(config):
        value = config[key]
        ids.update(value if isinstance(value, list) else [value])
    return ids


def _remap_config(config: dict, new_id: dict[int, int], notes: list[str], name: str) -> None:
    for key in _id_keys(config):
        value = config[key]
        values = value if isinstance(value, list) else [value]
        if any(v not in new_id for v in values):
            # An id without a token (or row) cannot be renumbered; leaving it would point at another token.
            notes.append(f"{name}: {key}={value} is not a kept token; set to null")
            config[key] = None
            continue
        config[key] = [new_id[v] for v in values] if isinstance(value, list) else new_id[value]


def _configs(folder: Path) -> dict[str, dict]:
    found = {}
    for name in ("config.json", "generation_config.json"):
        if (folder / name).is_file():
            found[name] = json.loads((folder / name).read_text(encoding="utf-8"))
    return found


def _all_config_dicts(config: dict) -> list[dict]:
    # Multimodal configs nest the language model's (vocab_size, token ids) under text_config.
    return [config] + [config[key] for key in ("text_config",) if isinstance(config.get(key), dict)]


def check_output_folder(output: str | os.PathLike) -> Path:
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(
            f"{output} already has files in it; st-prune trim writes only a new or empty "
            "folder: choose another --output"
        )
    return output


def trim_vocabulary(
    model_dir: str | os.PathLike,
    texts: Sequence[str],
    output: str | os.PathLike,
    *,
    vocab_size: int | None = None,
    min_frequency: int | None = None,
    held_out: Sequence[str] | None = None,
    seed: int = 0,
    card: bool = True,
) -> TrimReport:
    """Write ``model_dir`` with a vocabulary trimmed to ``texts`` into ``output`` (new or empty) and return the
    report (also written to ``output/trim.json`` and, with ``card``, appended to its model card: ``st-prune run``
    passes False, its card stage renders the trim's section itself).

    Every text of ``texts`` is counted, so each tokenizes and embeds exactly as before (below a ``vocab_size`` or
    ``min_frequency`` limit, those made of kept tokens). ``held_out`` texts measure how often tokenization changes
    on texts the trim did not see; without them, HELD_OUT_SHARE of ``texts`` (at most MAX_HELD_OUT) measures it
    against a second vocabulary built the same way from the other texts only, which is not written anywhere.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    if vocab_size is not None and min_frequency is not None:
        raise StPruneError("give --vocab-size N or --min-frequency F, not both")
    if vocab_size is not None and vocab_size < 1:
        raise StPruneError(f"--vocab-size must be a positive number of tokens, got {vocab_size}")
    if min_frequency is not None and min_frequency < 1:
        raise StPruneError(f"--min-frequency must be at least 1 (uses in the corpus), got {min_frequency}")
    if not model_dir.is_dir():
        raise StPruneError(f"{model_dir} is not a model folder; give the folder `st-prune prune`/`train` wrote")
    output = check_output_folder(output)
    if output.resolve() == model_dir.resolve():
        raise StPruneError("--output must be another folder than MODEL_DIR")
    folder = transformer_folder(model_dir)
    tokenizer_path = folder / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise StPruneError(f"{folder} has no tokenizer.json; st-prune trim needs a fast (tokenizers) tokenizer")
    weight_files = _weight_files(folder)
    if not weight_files:
        raise StPruneError(f"{folder} has no .safetensors weights; save the model with safetensors first")
    configs = _configs(folder)
    if "config.json" not in configs:
        raise StPruneError(f"{folder} has no config.json; give a model folder saved by transformers")
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise StPruneError("the corpus has no text; the trim keeps the tokens a corpus uses")

    tokenizer_json = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    family = tokenizer_family(tokenizer_json, str(tokenizer_path))
    original = Tokenizer.from_str(json.dumps(tokenizer_json))

    # Prompts are prepended to texts at encode time: their tokens must be kept too.
    st_config = model_dir / "config_sentence_transformers.json"
    prompts = []
    if st_config.is_file():
        prompts = [
            p
            for p in (json.loads(st_config.read_text(encoding="utf-8")).get("prompts") or {}).values()
            if isinstance(p, str) and p.strip()
        ]
    embedding_keys, rows = _embedding_tensors(weight_files, configs["config.json"])
    required = set().union(*(_config_ids(c) for conf in configs.values() for c in _all_config_dicts(conf)))

    def select(counted: Sequence[str]) -> Selection:
        encodings = original.encode_batch(list(counted) + prompts, add_special_tokens=False)
        counts = Counter(i for encoding in encodings for i in encoding.ids)
        return select_tokens(
            tokenizer_json,
            family,
            counts,
            required=required,
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            id_limit=rows,
        )

    selection = select(texts)
    kept = selection.kept
    new_id = {old: new for new, old in enumerate(kept)}
    notes = []
    dropped_added = [t["content"] for t in tokenizer_json.get("added_tokens", []) if t["id"] >= rows]
    if dropped_added:
        notes.append(f"dropped {len(dropped_added)} added token(s) without an embedding row: {dropped_added[:5]}")
    if vocab_size is not None and selection.corpus_left_out:
        notes.append(
            f"--vocab-size {vocab_size}: {selection.corpus_left_out:,} of {selection.corpus_seen:,} corpus "
            f"tokens left out (merge intermediates take {len(kept) - len(selection.corpus | selection.special | selection.alphabet):,} places)"
        )

    trimmed_json = trim_tokenizer_json(tokenizer_json, kept)
    trimmed = Tokenizer.from_str(json.dumps(trimmed_json, ensure_ascii=False))
    verified = _verify(original, trimmed, texts, set(kept))

    # The share of unseen texts whose tokenization changes. The shipped vocabulary has seen every corpus text, so
    # without a held-out file the split's texts are measured against a second vocabulary built without them.
    measured = trimmed
    if held_out is None:
        rest, held_out = split_held_out(texts, seed)
        held_out_source = (
            f"{HELD_OUT_SHARE:.0%} of the corpus, measured on a vocabulary built without them; the "
            "shipped vocabulary counts every corpus text"
        )
        if held_out:
            measured = Tokenizer.from_str(json.dumps(trim_tokenizer_json(tokenizer_json, select(rest).kept)))
    else:
        held_out = [text for text in held_out if text.strip()]
        held_out_source = "a held-out file"
    changed = None
    if held_out:
        before = original.encode_batch(held_out, add_special_tokens=False)
        after = measured.encode_batch(held_out, add_special_tokens=False)
        changed = sum(a.tokens != b.tokens for a, b in zip(before, after)) / len(held_out)

    staging = new_staging_dir(output)  # also removes what a trim killed earlier left beside ``output``
    try:
        skip = {path.resolve() for path in weight_files} | {tokenizer_path.resolve()}
        shutil.copytree(
            model_dir,
            staging,
            dirs_exist_ok=True,
            ignore=lambda where, names: [
                n for n in names if (Path(where) / n).resolve() in skip or n == ownership.MANIFEST
            ],
        )  # the record describes the source
        target = staging / folder.relative_to(model_dir)
        rows_kept, total_bytes = torch.tensor(kept, dtype=torch.long), 0
        for path in weight_files:
            tensors = {}
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata()
                for key in handle.keys():
                    tensor = handle.get_tensor(key)
                    if key in embedding_keys:
                        tensor = tensor.index_select(0, rows_kept).contiguous()
                    tensors[key] = tensor
                    total_bytes += tensor.numel() * tensor.element_size()
            save_file(tensors, str(target / path.name), metadata=metadata)
        index = target / "model.safetensors.index.json"
        if index.is_file():  # sharded weights: the index records the total size
            data = json.loads(index.read_text(encoding="utf-8"))
            data.setdefault("metadata", {})["total_size"] = total_bytes
            index.write_text(json.dumps(data, indent=2), encoding="utf-8")
        (target / "tokenizer.json").write_text(json.dumps(trimmed_json, ensure_ascii=False, indent=2), encoding="utf-8")
        for name, config in configs.items():
            for part in _all_config_dicts(config):
                _remap_config(part, new_id, notes, name)
                if "vocab_size" in part:
                    part["vocab_size"] = len(kept)
            (target / name).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        _rewrite_tokenizer_config(target / "tokenizer_config.json", new_id)

        report = TrimReport(
            tokenizer=family,
            vocab_before=original.get_vocab_size(with_added_tokens=True),
            vocab_after=len(kept),
            kept_special=len(selection.special),
            kept_alphabet=len(selection.alphabet),
            kept_corpus=len(selection.corpus - selection.special - selection.alphabet),
            kept_closure_only=len(set(kept) - selection.corpus - selection.special - selection.alphabet),
            corpus_tokens_seen=selection.corpus_seen,
            corpus_tokens_left_out=selection.corpus_left_out,
            corpus_texts=len(texts),
            vocab_size_requested=vocab_size,
            min_frequency=min_frequency,
            parameters_before=_parameter_count(model_dir),
            parameters_after=_parameter_count(staging),
            disk_bytes_before=_disk_bytes(model_dir),
            disk_bytes_after=0,
            held_out_texts=len(held_out),
            held_out_changed_share=changed,
            held_out_source=held_out_source,
            verified_texts=verified,
            notes=notes,
        )
        readme = staging / "README.md"
        existing = readme.read_text(encoding="utf-8").rstrip() + "\n\n" if readme.is_file() else ""
        # The card and report are part of the folder they measure: write, measure, rewrite until the written
        # figure is the folder's size (it changes by a few bytes at most, so this settles at once).
        for _ in range(5):
            if card:
                readme.write_text(existing + report.card_section(), encoding="utf-8")
            (staging / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
            size = _disk_bytes(staging)
            if size == report.disk_bytes_after:
                break
            report.disk_bytes_after = size
        check_output_folder(output)  # nothing appeared there meanwhile
        ownership.install(staging, output, by="trim", fix="choose another --output")  # recorded as st-prune's
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _embedding_tensors(weight_files: Sequence[Path], config: dict) -> tuple[set[str], int]:
    """Names of the vocabulary-sized weights (input embeddings, untied output head) and their row count."""
    from st_prune.util.safetensors_header import tensors

    found = {key: entry["shape"] for key, entry in tensors(weight_files) if key.endswith(EMBEDDING_NAMES)}
    inputs = {key: shape for key, shape in found.items() if not key.endswith("lm_head.weight")}
    if len(inputs) != 1:
        raise StPruneError(
            f"expected one input embedding matrix in the weights, found {sorted(inputs) or 'none'}; "
            "st-prune trim handles decoder LLM folders saved by transformers"
        )
    rows = next(iter(inputs.values()))[0]
    vocab_sizes = {conf.get("vocab_size") for conf in _all_config_dicts(config)} - {None}
    if vocab_sizes and rows not in vocab_sizes:
        raise StPruneError(
            f"the embedding matrix has {rows} rows but config.json says vocab_size "
            f"{sorted(vocab_sizes)}; the folder is inconsistent"
        )
    return {key for key, shape in found.items() if shape[0] == rows}, rows


def _rewrite_tokenizer_config(path: Path, new_id: dict[int, int]) -> None:
    """transformers keys ``added_tokens_decoder`` by token id; renumber it (dropping tokens that are gone)."""
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        config["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in decoder.items() if int(k) in new_id}
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def _verify(original, trimmed, texts: Sequence[str], kept: set[int], limit: int = 5000) -> int:
    """Check the promise on (up to ``limit`` of) the counted texts: a text made of kept tokens tokenizes to the
    same tokens; any text decodes back to what the original tokenizer decodes. A failure is a bug, not bad input."""
    sample = list(texts[:limit])
    before = original.encode_batch(sample, add_special_tokens=False)
    after = trimmed.encode_batch(sample, add_special_tokens=False)
    for text, a, b in zip(sample, before, after):
        if set(a.ids) <= kept and a.tokens != b.tokens:
            raise RuntimeError(f"trimmed tokenizer differs on a text of kept tokens: {text[:80]!r}")
        if original.decode(a.ids) != trimmed.decode(b.ids):
            raise RuntimeError(f"trimmed tokenizer does not round-trip {text[:80]!r}")
    return len(sample)
