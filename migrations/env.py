"""Alembic environment: the URL comes from DATABASE_URL (or the caller's config)."""

from alembic import context
from sqlalchemy import text

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


def _not_a_partition(connection):
    """Autogenerate's filter: PostgreSQL's partitions (history/partitions.py) are left out,
    the models map their parents only. Read when first asked (a query before alembic begins
    its transaction would break the autocommit blocks)."""
    found: list[set[str]] = []

    def include(name, type_, _parents) -> bool:
        if type_ != "table" or connection.dialect.name != "postgresql":
            return True
        if not found:
            q = text("SELECT relname FROM pg_class WHERE relispartition")
            found.append(set(connection.execute(q).scalars()))
        return name not in found[0]

    return include


def run_migrations_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            include_name=_not_a_partition(connection),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
