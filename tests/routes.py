"""Every API route, walked from the app's own OpenAPI schema: a route added later is covered
by the tenant-isolation tests without anyone adding it to a list. (A route hidden from the
schema with include_in_schema=False would escape this walk: only /docs and its static assets
are, and they belong to no tenant.)"""

from __future__ import annotations

import re

from enrichment.api import app

# Routes that belong to no tenant, each with its reason. Anything else must be per tenant.
UNSCOPED = {
    "/metrics": "every tenant's aggregates for Prometheus; its own bearer token",
    "/livez": "the orchestrator's liveness probe: the process answers, no I/O, no data",
    "/readyz": "the orchestrator's readiness probe: database and broker up, a reason without"
    " hosts or data",
}
# Route prefixes that name a tenant but open with the operator's ENRICHMENT_ADMIN_TOKEN, never
# a tenant's key (api/admin.py): a tenant key gets 401 there (tests/test_tenant_admin.py).
ADMIN = {
    "/api/admin/": "the operator's admin API over every tenant; its own bearer token",
}
# Values for the other path parameters when the test does not care which record they name.
ANY_PARAMS = {"external_id": "none", "action_id": 1, "record_id": 1, "name": "none"}


def tenant_routes(query: str = "") -> list[tuple[str, str]]:
    """(method, path) of every tenant route, with `{t}` for the tenant; the other parameters
    stay `{name}` for the test to fill (ANY_PARAMS, or values of its own)."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        if path in UNSCOPED or path.startswith(tuple(ADMIN)):
            continue
        assert "{tenant}" in path, f"{path} has no {{tenant}}: scope it or list it in UNSCOPED"
        assert set(re.findall(r"\{(\w+)\}", path)) <= {"tenant", *ANY_PARAMS}, (
            f"{path}: add its parameters to ANY_PARAMS"
        )
        found.extend(
            (m.upper(), path.replace("{tenant}", "{t}") + query) for m in sorted(operations)
        )
    return found
