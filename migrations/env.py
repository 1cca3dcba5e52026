"""Alembic environment: the URL comes from DATABASE_URL (or the caller's config)."""

from alembic import context

from enrichment.core import (  # noqa: F401 (their tables join Base.metadata)
    audit,
    batch_models,
    breaker_store,
    calibration_maps,
    delivery_log,
    monitor_models,
    prune_counts,
    review_claims,
    review_sessions,
    reviewers,
    shadow_answers,
)
from enrichment.core.db import make_engine
from enrichment.core.models import Base
from enrichment.core.settings import Settings

config = context.config
url = config.attributes.get("database_url") or Settings.from_env().database_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
