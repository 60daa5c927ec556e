"""Recipes and the stage runner behind ``st-prune run``: loading, schema, preflight checks, stage keys and the stages."""
