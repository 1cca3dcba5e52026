"""The builders of the labelled sets shipped in `enrichment/tooling/data/` (scripts/README.md)."""
