"""Experiments on prompts and models, and the cheap model first (issue 24): the provider
under each tenant's variants and cascade (`router`), the cascade's gate from the tenant's
reviews (`cascade`), and the comparison of the variants against people (`report`).

A layer beside batches and metrics: it drives the providers with what reviews hold."""
