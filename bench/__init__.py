"""`make bench`: the catalog transforms, ingest and incremental re-builds, measured side by side."""
