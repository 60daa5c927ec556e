"""Find out once whether the Hub answers, and run offline when it does not.

Without network and without ``HF_HUB_OFFLINE=1``, every dataset load (``datasets``/``huggingface_hub``) tries the
Hub and retries with back-off, about 25 s per mteb task before it falls back to the cache. One short probe
first, then offline mode for the rest of the work, makes cached data load at once and the rest fail at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 5.0


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub sees it (read at its import) or as set since."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def hub_reachable(timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """True when the Hub endpoint answers an HTTP request at all (any status), within ``timeout`` seconds."""
    from huggingface_hub.utils import get_session

    try:
        # huggingface_hub's own session: the same proxies and certificates the real downloads will use.
        get_session().head(hub_endpoint(), timeout=timeout)
    except Exception:  # noqa: BLE001 - refused, unknown host, timeout, TLS: all mean "not reachable"
        return False
    return True


@contextmanager
def offline_mode() -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` for huggingface_hub and datasets (which read it at import) until the block ends."""
    import datasets.config
    from huggingface_hub import constants

    saved = (
        constants.HF_HUB_OFFLINE,
        datasets.config.HF_HUB_OFFLINE,
        datasets.config.HF_DATASETS_OFFLINE,
        os.environ.get("HF_HUB_OFFLINE"),
    )
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved[:3]
        if saved[3] is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved[3]


@contextmanager
def offline_unless_reachable(needed: bool = True) -> Iterator[None]:
    """Run the block offline when the Hub is needed, not already offline, and does not answer one probe."""
    if not needed or is_offline() or hub_reachable():
        yield
        return
    logger.warning(
        "The Hub at %s cannot be reached; working offline: only data already in the local cache is used", hub_endpoint()
    )
    with offline_mode():
        yield
