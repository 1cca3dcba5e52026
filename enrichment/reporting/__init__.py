"""Presentation: the per-tenant report (figures, trends, thresholds), its HTML page and charts,
and the words every page and printer shares."""
