"""Errors that carry a one-line, user-facing message naming the fix."""


class StPruneError(ValueError):
    """Bad input or an unsupported model. The CLI prints the message alone and exits with status 2."""
