"""Per-tenant snapshots, Alertmanager-like alerts, their delivery (Slack), Prometheus, reports."""
