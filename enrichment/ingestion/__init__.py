"""Records in: one validation and write path for files and the API."""
