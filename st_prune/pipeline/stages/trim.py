"""The trim stage: the exported folder with its vocabulary cut to what a corpus uses (``st_prune.trim.vocab``).

The record (``work/<variant>/trim.json``) holds the trimmed folder's parameters and weight bytes (the figures the
card and the zoo index show for a trimmed variant) and the trim's full report.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def training_corpus(rows, instructions: Iterable[str]) -> list[str]:
    """The texts a trimmed model must embed exactly when no corpus file is given: every training text, and the
    instruction prompts of training (the rows' ``instruction`` column) and of ``instructions`` (queries, tasks)."""
    from st_prune.data.triplets import instruction_prompt

    texts = [text for column in ("anchor", "positive", "negative") if column in rows.column_names
             for text in rows[column] if text]
    prompts = set(rows["instruction"]) if "instruction" in rows.column_names else set()
    prompts |= set(instructions)
    return texts + [instruction_prompt(text) or "" for text in sorted(i for i in prompts if i)]


def trim_variant(source: Path, folder: Path, corpus: list[str], *, vocab_size: int | None, min_frequency: int | None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Trim ``source`` (the export) into ``folder``, rebuilt whole: it is the runner's own model folder."""
    from st_prune.model.export import weight_bytes
    from st_prune.trim.vocab import trim_vocabulary

    if folder.exists():  # an earlier trim's (or export's) output
        shutil.rmtree(folder)
    report = trim_vocabulary(source, corpus, folder, vocab_size=vocab_size, min_frequency=min_frequency)
    log(f"       {report.summary().splitlines()[0]}")
    return {"parameters": report.parameters_after, "weight_bytes": weight_bytes(folder), "report": report.to_dict()}
