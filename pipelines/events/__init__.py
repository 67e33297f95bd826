"""S3 raw events → bronze: envelope validation (pure), object listing/reading, exactly-once ingest, asset + sensor."""
