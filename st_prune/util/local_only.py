"""Local models stay local: sentence-transformers must not turn their paths into Hub ids.

sentence-transformers looks a model's base up on the Hub to fill its card (``model_info``, with the user's
token): when a model is loaded from ``parent/folder`` it asks for that path as a repo id, and when a model is
saved it asks for the last two parts of ``config._name_or_path`` (``/home/me/models/llama`` ->
``models/llama``) and a few ``_``-splits of the folder name. For a local model those requests send local
folder names to the Hub, and an unrelated public repo of that name would become the card's ``base_model``.
st-prune sets the card's base model itself (``base.id`` of a recipe), so for local sources these look-ups are
switched off with the card data's own ``local_files_only`` flag; Hub ids the user gave are still looked up.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def is_local(reference: str | os.PathLike | None) -> bool:
    """True for a path on this machine (folder, file, or an absolute path); False for a Hub id or nothing."""
    if reference is None:
        return False
    text = os.path.expanduser(str(reference))
    return os.path.isabs(text) or os.path.exists(text)


def keep_card_local(model: SentenceTransformer, source: str | os.PathLike | None = None) -> None:
    """No Hub look-ups for ``model``'s card when it comes from a local path (``source`` or its config's)."""
    if source is None:
        config = getattr(getattr(model[0], "auto_model", None), "config", None)
        source = getattr(config, "_name_or_path", None)
    if is_local(source):
        model.model_card_data.local_files_only = True


def load_model_folder(folder: str | os.PathLike, **kwargs: Any) -> SentenceTransformer:
    """``SentenceTransformer(folder)`` for a local folder, without sending its path to the Hub as a repo id."""
    from sentence_transformers import SentenceTransformer

    from st_prune.util.file_integrity import check_model_weights

    check_model_weights(folder)  # one line for a cut-short copy, not a SafetensorError traceback
    kwargs.setdefault("local_files_only", True)
    return SentenceTransformer(str(folder), **kwargs)
