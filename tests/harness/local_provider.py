"""Fixtures: the local provider as a subprocess (owned by the provider work)."""
