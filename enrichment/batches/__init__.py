"""Message Batches: a tenant's backlog sent to the AI at half price, one stage per batch.

When (per tenant, tenants.settings, read through core.tenant_settings): "batch_mode"
"auto" (the default) sends a backlog of more than "batch_min_records"
(ENRICHMENT_BATCH_MIN_RECORDS, 500) due records by batch; "always" sends every due record by
batch (the sweep leaves the tenant to it); "never" keeps the tenant on the chains. Only the
anthropic provider has batches; the local one answers in-process.

The life of a batch, each step run by beat's `enrichment.batches` task:
1. submit (submit.py): claim the tenant's due records with a chain's short lease, begin
   each record's next stage exactly as a chain would (`pipeline.begin_stage`), then in one
   transaction extend the leases still held to outlive the batch's 24 h expiry (no broker
   countdown is involved) and store the batch and exactly those records ("submitting"),
   then create it with the same request bodies the chain sends;
2. poll (apply.py): retrieve "in_progress" batches and note the counts;
3. apply (apply.py): stream an ended batch's results and apply each through the chain's
   own outcome code (`outcomes.finish_stage`, `stage_write.write`): validation, NULL on a
   failure, backoff, escalation, attempt rows (priced at the batch rate, with `batch_id`),
   events. "errored" is a failure of the stage; "expired" and "canceled" hand the record
   back without burning a retry. A record whose stage completed is released, and the next
   sweep or batch takes its next stage.

A result is applied once: `batch_records.applied_at` is set in the transaction that writes
it, so a worker killed mid-apply leaves the rest for the next run and repeats none.

A kill between any two commits leaves every record claimable within one sweep interval plus
a chain's lease (`core.due.chain_lease_s`): a record is on the long lease only while an
unapplied `batch_records` row holds it, and a "submitting" batch whose create never
confirmed is given up (`apply.stale_submit_s`). tests/test_crash_points.py kills a submit
and an apply at each boundary (`core.crashpoints`).
"""

from __future__ import annotations

# The advisory lock every batches run takes ("enrb" in ASCII; core.db.exclusive). Runs overlap
# when applying a big batch outlasts beat's interval, and two would only race each other over
# the same results.
LOCK_KEY = 0x656E7262
