"""The trim stage: the exported folder with its vocabulary cut to what a corpus uses (``st_prune.trim.vocab``).

The record (``work/<variant>/trim.json``) holds the trimmed folder's parameters and weight bytes (the figures the
card and the zoo index show for a trimmed variant) and the trim's full report.
"""

from __future__ import annotations

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
    """Trim ``source`` (the export) into ``folder``, rebuilt whole from st-prune's own files (the runner's model
    folder)."""
    from st_prune.errors import StPruneError
    from st_prune.model.export import weight_bytes
    from st_prune.trim.vocab import trim_vocabulary
    from st_prune.util import ownership

    left = ownership.remove_owned(folder)  # an earlier trim's (or export's) output; never the user's files
    if left:
        raise StPruneError(f"{folder} holds files st-prune did not write ({', '.join(left[:3])}), and the trim rebuilds "
                           "that folder whole: move them away and run again")
    report = trim_vocabulary(source, corpus, folder, vocab_size=vocab_size, min_frequency=min_frequency)
    log(f"       {report.summary().splitlines()[0]}")
    return {"parameters": report.parameters_after, "weight_bytes": weight_bytes(folder), "report": report.to_dict()}
