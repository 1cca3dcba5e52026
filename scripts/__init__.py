"""Scripts run from the repo root (`python -m scripts.<...>`); not part of the installed package."""
