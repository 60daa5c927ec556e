"""Errors that carry a one-line, user-facing message naming the fix."""

import errno


class StPruneError(ValueError):
    """Bad input or an unsupported model. The CLI prints the message alone and exits with status 2."""


class ModelUnavailable(StPruneError):
    """A model that cannot be read on this machine: its package is not installed, or a Hub id is not cached while
    offline (or cannot be found). ``st-prune run --dry-run`` plans without the base then."""


# A write that failed for lack of room -> what to say and how to fix it (before "or choose another FLAG").
_NO_ROOM = {
    errno.ENOSPC: ("no space left on the device", "free space on that disk"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space within your quota"),
    errno.EFBIG: ("a file exceeds the file-size limit", "raise the limit (`ulimit -f unlimited`)"),
}


def out_of_room(error: BaseException) -> tuple[str, str] | None:
    """``(what happened, the fix)`` when ``error`` (or an error it was raised from) is a write that ran out of room:
    a full disk, a quota or a file-size limit (``ulimit -f``; Python ignores SIGXFSZ, so the write fails with
    EFBIG). None for any other error.

    Libraries report it in their own ways: Python's writes as ``OSError`` with an errno; safetensors' writer as
    ``SafetensorError("... (os error 28)")``; ``torch.save``'s zip writer as a ``RuntimeError`` with no errno.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _NO_ROOM:
            return _NO_ROOM[error.errno]
        text = str(error)
        for code, answer in _NO_ROOM.items():
            if f"(os error {code})" in text:
                return answer
        if "inline_container.cc" in text and ("unexpected pos" in text or "file write failed" in text):
            return ("a write failed (a full disk or a file-size limit)", "free space or raise the file-size limit")
        error = error.__cause__ or error.__context__
    return None
