"""HTTP endpoints, one module per concern; each exposes ``router`` (and hot ASGI endpoints)."""
