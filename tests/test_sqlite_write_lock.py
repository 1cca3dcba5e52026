"""The embedded default's write lock (`db.write_lock`): on SQLite a transaction that reads
(a SAVEPOINT opens it) and then writes fails at once with "database is locked" when another
writer committed in between, and every retry inside it fails the same way; one that took the
write lock first writes, the other writer waiting its turn instead. (The demo's tenant
exceptions were refused this way now and then while its fleet wrote.)"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from enrichment.core import db


@pytest.fixture
def factory(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'lock.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    yield db.sessionmaker(engine)
    engine.dispose()


def intrude(factory) -> None:
    """Another writer that waits at most 100 ms for the lock."""
    with factory.begin() as other:
        other.execute(text("PRAGMA busy_timeout = 100"))
        other.execute(text("INSERT INTO t VALUES (2)"))


def test_without_the_lock_a_read_then_write_fails_when_another_writer_commits(factory):
    locked = pytest.raises(OperationalError, match="database is locked")
    # As ingestion writes a chunk: read, then write, in one savepoint.
    with locked, factory.begin() as s, s.begin_nested():
        s.execute(text("SELECT count(*) FROM t")).scalar()
        intrude(factory)  # commits between our read and our write
        s.execute(text("INSERT INTO t VALUES (1)"))


def test_with_the_lock_the_write_goes_through_and_the_other_writer_waits(factory):
    with factory.begin() as s:
        db.write_lock(s)
        with s.begin_nested():
            s.execute(text("SELECT count(*) FROM t")).scalar()
            with pytest.raises(OperationalError, match="database is locked"):
                intrude(factory)  # it waited its 100 ms for our lock
            s.execute(text("INSERT INTO t VALUES (1)"))
    intrude(factory)  # and gets its turn once we commit
    with factory() as s:
        assert sorted(s.execute(text("SELECT x FROM t")).scalars()) == [1, 2]
