"""Errors from the Hub client reach the user without the token."""

from __future__ import annotations

import pytest
from hub_tokens import REPO, WRITE_TOKEN

from st_prune.hub.publish import PublishError, _hub_errors


def test_errors_re_raised_from_the_hub_client_are_scrubbed_of_the_token():
    with pytest.raises(PublishError) as failure:
        with _hub_errors(REPO, WRITE_TOKEN, "uploading to"):
            raise RuntimeError(f"request failed with headers {{'authorization': 'Bearer {WRITE_TOKEN}'}}\nmore")
    message = str(failure.value)
    assert WRITE_TOKEN not in message and "Bearer ***" in message and "\n" not in message
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
