"""Labelled exception records shipped with the package (`labelled_exceptions.jsonl`)."""
