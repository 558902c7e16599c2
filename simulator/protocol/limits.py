"""Figures the marketplace publishes (protocol.md §7, §10)."""

QUERY_INSTANCE_LIMIT = 100
"""queryInstance carries at most 100 comma-separated instanceIds (doc)."""
