"""Experiments that reproduce the paper's tables in miniature (run as modules)."""
