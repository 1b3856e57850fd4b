"""Fixtures: the local control plane (owned by the control-plane work)."""
