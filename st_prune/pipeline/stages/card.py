"""The card stage: ``README.md`` of the model folder, rendered from the stage records (``st_prune.card.render``), with the
L3Prune curve copied beside it. Its marker records the repo id the card was rendered for (publish checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def card_variant(recipe: Any, variant: Any, *, repo_id: str, folder: Path, scan: dict[str, Any],
                 records: dict[str, dict[str, Any] | None], run_dir: Path, curve: Path,
                 speed_documents: int) -> dict[str, Any]:
    """Write the card of ``folder`` (see ``st_prune.card.render.card_context`` for the inputs)."""
    from st_prune.card.render import card_context, write_card

    context = card_context(recipe, variant, repo_id=repo_id, folder=folder, scan=scan, records=records, run_dir=run_dir,
                           speed_documents=speed_documents)
    write_card(folder, context, curve)
    return {"repo_id": repo_id}
