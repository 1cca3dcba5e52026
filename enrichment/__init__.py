"""AI enrichment of logistics exception records: the domain, with no Celery import."""
