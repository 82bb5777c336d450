"""Data operations: ingestion (UCI files or URL, synthetic generator), validation, preparation."""
