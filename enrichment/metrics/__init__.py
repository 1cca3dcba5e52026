"""Measuring: the monitor's passes over records and attempts, its snapshots, its pace, and the
Prometheus exposition (/metrics)."""
