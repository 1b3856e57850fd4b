"""Provider layer: one async protocol, typed errors, catalogs, and one adapter per wire API."""
