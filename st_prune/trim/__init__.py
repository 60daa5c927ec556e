"""Exact vocabulary trimming of a saved model folder."""
