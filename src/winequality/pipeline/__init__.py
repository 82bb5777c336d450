"""Continuous training: refresh data, train, gate, promote, notify."""
