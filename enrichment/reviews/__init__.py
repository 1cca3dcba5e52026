"""The people's side: the review queue and a person's decision on a record."""
