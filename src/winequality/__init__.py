"""Wine-quality prediction, from raw data to a monitored production service."""
