"""Drift detection service and the Alertmanager webhook receiver."""
