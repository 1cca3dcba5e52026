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
}
OTHER_PARAM = re.compile(r"\{(?!tenant\})[^}]+\}")


def tenant_routes(query: str = "") -> list[tuple[str, str]]:
    """(method, path) of every tenant route, with `{t}` for the tenant and 1 for other ids."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        if path in UNSCOPED:
            continue
        assert "{tenant}" in path, f"{path} has no {{tenant}}: scope it or list it in UNSCOPED"
        concrete = OTHER_PARAM.sub("1", path).replace("{tenant}", "{t}") + query
        found.extend((method.upper(), concrete) for method in sorted(operations))
    return found
