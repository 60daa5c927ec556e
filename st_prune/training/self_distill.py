"""Recovery by self-distillation (issue 25.3): the uncut model is the teacher of its own cut.

The teacher embeds every training text once; the cut then trains on the distance of its embeddings to those (cosine
or MSE: ``TrainingConfig.distill_distance``), plus the contrastive loss when the data has pairs
(``st_prune.training.distillation.DistilledContrastiveLoss``). Unlabelled text is enough: a ``.txt`` file (one text a
line), a JSONL file with a ``text`` column, a list of strings or a Dataset with only a ``text`` column.

The teacher's embeddings are the slow part (a full-depth forward over every text), so they are cached in a folder of
the run (``teacher-embeddings/``): ``key.json`` names what they are embeddings *of* (teacher, texts with their
prompts, max_seq_length, normalisation, dimension) and ``chunk-NNNNN.npy`` hold them, each written whole as it
finishes, so a killed run resumes at the first missing chunk. A cache whose key differs is another model's or other
settings' embeddings: ``st-prune train`` refuses it (``stale="refuse"``: DIR.work is the user's run and the fix is
theirs to choose), the recipe's train stage rebuilds it (``stale="rebuild"``: there it is the stage's own scratch,
like its checkpoints, and the stage key already says the settings changed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from st_prune.errors import StPruneError
from st_prune.util.files import read_json, write_json_atomic

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from st_prune.data.training_data import TrainingData

CACHE_DIR = "teacher-embeddings"
KEY_FILE = "key.json"
TEXT_COLUMN = "text"
CHUNK = 256  # texts per cached chunk: what a kill can lose


def read_texts(path: str | os.PathLike) -> list[str] | None:
    """The texts of an unlabelled-text file: a ``.txt`` (one text a line, blank lines skipped) or a JSONL file whose
    rows have a ``text`` column and no ``anchor``; None for any other data (triplets). An empty one is an error."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in (".txt", ".jsonl"):
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix.lower() == ".txt":
        texts = [line.strip() for line in lines if line.strip()]
        if not texts:
            raise StPruneError(f"{path} holds no text: write one text a line")
        return texts
    rows = [json.loads(line) for line in lines if line.strip()]
    if not rows:
        raise StPruneError(f"{path} holds no rows: write one JSON object with a 'text' field a line")
    if TEXT_COLUMN not in rows[0] or "anchor" in rows[0]:
        return None
    texts = [str(row.get(TEXT_COLUMN) or "").strip() for row in rows]
    if not any(texts):
        raise StPruneError(f"{path}: every 'text' is empty: give each row a non-empty 'text'")
    return [text for text in texts if text]


def unlabelled_texts(data: Any) -> list[str] | None:
    """``data`` as a list of texts when it is unlabelled text (see ``read_texts``), else None."""
    if isinstance(data, (str, os.PathLike)):
        return read_texts(data)
    if isinstance(data, Sequence) and not isinstance(data, str) and all(isinstance(text, str) for text in data):
        texts = [text for text in data if text.strip()]
        if not texts:
            raise StPruneError("the texts to distill on are empty: give at least one non-empty text")
        return texts
    if getattr(data, "column_names", None) == [TEXT_COLUMN]:
        return unlabelled_texts(list(data[TEXT_COLUMN]))
    return None


def document_prompt(teacher: SentenceTransformer) -> str | None:
    """The prompt unlabelled texts are embedded with: the model's document prompt, else its default one (documents,
    not queries, are what users hold in bulk)."""
    prompts = teacher.prompts or {}
    prompt = prompts.get("document", prompts.get("passage"))
    if prompt is None and teacher.default_prompt_name:
        prompt = prompts.get(teacher.default_prompt_name)
    return prompt or None


@dataclass
class TeacherCost:
    """What the teacher's embeddings cost: the card's line."""

    texts: int
    seconds: float  # embedding time summed over the runs that embedded (a cached run adds 0)
    cached: bool  # every embedding came from the cache

    def to_dict(self) -> dict[str, Any]:
        return {"texts": self.texts, "seconds": round(self.seconds, 1), "cached": self.cached}


def cache_key(
    identity: str,
    items: Sequence[tuple[str | None, str]],
    max_seq_length: int | None,
    teacher: SentenceTransformer | None = None,
) -> dict[str, Any]:
    """What a cache holds the embeddings of; ``items`` are (prompt, text) pairs in order."""
    digest = hashlib.sha256()
    for prompt, text in items:
        digest.update(json.dumps([prompt, text]).encode("utf-8"))
    key: dict[str, Any] = {
        "teacher": identity,
        "texts": len(items),
        "texts_sha256": digest.hexdigest(),
        "max_seq_length": max_seq_length,
    }
    if teacher is not None:
        key["normalize"] = any(type(module).__name__ == "Normalize" for module in teacher)
        key["dimension"] = teacher.get_embedding_dimension()
    return key


def check_cache(folder: Path, key: dict[str, Any], stale: str = "refuse") -> bool:
    """True when ``folder`` may be used for ``key`` (absent, or made for it). A cache made for another key is refused
    with one line naming the fix (``stale="refuse"``) or deleted (``"rebuild"``); a folder st-prune did not write
    (no key.json) is never deleted."""
    key_file = folder / KEY_FILE
    if not folder.exists():
        return True
    if not key_file.is_file():
        raise StPruneError(f"{folder} exists but holds no teacher-embedding cache ({KEY_FILE}): move it away")
    earlier = read_json(key_file, fix=f"delete {folder} to embed again")
    compared = [name for name in key if name in earlier or name not in ("normalize", "dimension")]
    differs = [name for name in compared if earlier.get(name) != key[name]]
    if not differs:
        return True
    if stale == "rebuild":
        shutil.rmtree(folder)
        return True
    raise StPruneError(
        f"{folder} holds teacher embeddings of another {', '.join(differs)} ({earlier.get(differs[0])!r}, now "
        f"{key[differs[0]]!r}): delete {folder} to embed again, or pass --overwrite to start the run over"
    )


def teacher_embeddings(
    teacher: SentenceTransformer,
    items: Sequence[tuple[str | None, str]],
    folder: str | os.PathLike,
    *,
    identity: str,
    batch_size: int = 32,
    stale: str = "refuse",
    progress: bool = True,
    chunk_size: int = CHUNK,
    before_write: Callable[[], Any] | None = None,
) -> tuple[np.ndarray, TeacherCost]:
    """The teacher's embedding of every (prompt, text) in ``items``, (len(items), dimension) float32, cached in
    ``folder`` (resumable: chunks of ``chunk_size`` texts, each written whole). ``before_write`` runs once the cache is
    known to be usable, before anything is written (``st-prune train`` claims its work folder there)."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    key = cache_key(identity, items, teacher.max_seq_length, teacher)
    check_cache(folder, key, stale)
    if before_write is not None:
        before_write()
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / KEY_FILE, key)
    cost_file = folder / "cost.json"  # the embedding time of earlier (killed) runs, so the card counts it all
    earlier_seconds = (
        float(read_json(cost_file, fix=f"delete {folder} to embed again").get("seconds", 0))
        if cost_file.is_file()
        else 0.0
    )
    starts = range(0, len(items), chunk_size)
    chunks: list[np.ndarray] = []
    seconds, embedded = 0.0, 0
    bar = tqdm(total=len(items), desc="teacher embeddings", unit="text", disable=not progress)
    for index, start in enumerate(starts):
        path = folder / f"chunk-{index:05d}.npy"
        part = items[start : start + chunk_size]
        if path.is_file():
            chunk = np.load(path)
            if chunk.shape[0] == len(part):
                chunks.append(chunk)
                bar.update(len(part))
                continue
        began = time.perf_counter()
        chunk = _encode(teacher, part, batch_size)
        seconds += time.perf_counter() - began
        embedded += len(part)
        staging = path.with_name(path.name + ".partial.npy")
        np.save(staging, chunk)
        os.replace(staging, path)  # whole or absent: a kill mid-write leaves no half chunk to resume from
        chunks.append(chunk)
        bar.update(len(part))
    bar.close()
    total = earlier_seconds + seconds
    write_json_atomic(folder / "cost.json", {"seconds": round(total, 3)})
    return np.concatenate(chunks).astype(np.float32), TeacherCost(len(items), total, cached=embedded == 0)


def _encode(teacher: SentenceTransformer, items: Sequence[tuple[str | None, str]], batch_size: int) -> np.ndarray:
    """Encode texts grouped by prompt (one encode call each), back in the items' order."""
    out: list[np.ndarray | None] = [None] * len(items)
    by_prompt: dict[str | None, list[int]] = {}
    for position, (prompt, _) in enumerate(items):
        by_prompt.setdefault(prompt, []).append(position)
    for prompt, positions in by_prompt.items():
        # prompt="" rather than None: None would let encode() put the model's default prompt before the texts
        vectors = teacher.encode(
            [items[i][1] for i in positions],
            prompt=prompt or "",
            batch_size=batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        for position, vector in zip(positions, vectors, strict=True):
            out[position] = vector
    return np.stack(out).astype(np.float32)


def text_training_data(texts: Sequence[str], prompt: str | None, batch_size: int) -> TrainingData:
    """Unlabelled texts as training data: one ``text`` column, embedded with ``prompt``."""
    from datasets import Dataset

    from st_prune.data.training_data import TrainingData, prepare_training_data

    dataset = Dataset.from_dict({TEXT_COLUMN: list(texts)})
    return prepare_training_data(
        TrainingData({"train": dataset}, {"train": {TEXT_COLUMN: prompt}} if prompt else {}), batch_size
    )


def self_distillation_data(
    teacher: SentenceTransformer,
    data: Any,
    cache_dir: str | os.PathLike,
    *,
    identity: str,
    batch_size: int = 64,
    prompts: Any = None,
    stale: str = "refuse",
    progress: bool = True,
    before_write: Callable[[], Any] | None = None,
) -> tuple[TrainingData, TeacherCost]:
    """Training data carrying the teacher's embedding of every text in a ``label`` column, and the teacher's cost.

    ``data`` is unlabelled text (see ``unlabelled_texts``: the cut then trains on the distance alone) or triplets as
    ``prepare_training_data`` takes them (distance plus the contrastive loss). ``identity`` names the teacher in the
    cache key (a Hub id or folder and its depth); ``batch_size`` is the training batch size.
    """
    from st_prune.data.training_data import TrainingData, prepare_training_data
    from st_prune.training.distillation import LABEL_COLUMN, unlabelled_copy

    texts = unlabelled_texts(data)
    if texts is not None:
        if prompts:
            raise StPruneError("unlabelled texts are embedded with the model's document prompt; do not pass prompts")
        prepared = text_training_data(texts, document_prompt(teacher), batch_size)
    else:
        from st_prune.prompt_format import instruction_template

        # The teacher's instruction format, which its cut shares (a Qwen3-Embedding's "Instruct: ...\nQuery:").
        prepared = prepare_training_data(data, batch_size, prompts, instruction_template(teacher.prompts))
    layout = []  # (dataset, columns, rows) in the order their texts are flattened
    items: list[tuple[str | None, str]] = []
    for name, dataset in prepared.datasets.items():
        dataset = unlabelled_copy(name, dataset)
        for column in dataset.column_names:
            prompt = prepared.prompt(name, column)
            items.extend((prompt, text) for text in dataset[column])
        layout.append((name, dataset, len(dataset.column_names), len(dataset)))
    vectors, cost = teacher_embeddings(
        teacher,
        items,
        cache_dir,
        identity=identity,
        batch_size=32,
        stale=stale,
        progress=progress,
        before_write=before_write,
    )
    datasets, offset = {}, 0
    for name, dataset, columns, rows in layout:
        block = vectors[offset : offset + columns * rows].reshape(columns, rows, -1).transpose(1, 0, 2)
        offset += columns * rows
        datasets[name] = dataset.add_column(LABEL_COLUMN, block.tolist())
    return TrainingData(datasets, prepared.prompts, prepared.dropped), cost
