"""Fixtures that start a local Hub-compatible HTTP server (owned by the download tests)."""
