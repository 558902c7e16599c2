"""Figures the marketplace publishes (protocol.md §7, §10)."""

QUERY_INSTANCE_LIMIT = 100
"""queryInstance carries at most 100 comma-separated instanceIds (doc)."""

INSTANCE_ID_MAX_LENGTH = 64
"""An instanceId is 1 to 64 characters (doc)."""
