"""Alerting: the rules judged on each snapshot, their state, notices, the provider pages, and
the senders (Slack, PagerDuty) with their routing."""
