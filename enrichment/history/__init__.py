"""History at scale: what the fleet keeps and for how long (retention.py), the pruner that
removes the rest in short chunks (pruner.py), the archive it writes first when asked
(archive.py, read back by restore.py), and erasure. No Celery here: beat's task
(workers/tasks.py) and `enrichment prune` both call `pruner.prune`."""
