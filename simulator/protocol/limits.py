"""Figures and formats the marketplace publishes, named once (docs/protocol.md)."""

from datetime import timedelta

QUERY_INSTANCE_LIMIT = 100
"""queryInstance carries at most 100 comma-separated instanceIds (docs/protocol.md §4.5)."""

COMPACT_TIME_FORMAT = "%Y%m%d%H%M%S"
"""``yyyyMMddHHmmss``: expireTime (§4.2) and the order times of Querying an Order (§8.1)."""

BASIC_UTC_FORMAT = "%Y%m%dT%H%M%SZ"
"""``YYYYMMDDTHHMMSSZ``: the gateway's X-Sdk-Date (§2.5) and the usage-push record times (§8.3)."""

GATEWAY_CLOCK_WINDOW = timedelta(minutes=15)
"""How far a signed date may be from the gateway's clock before it is refused (§2.5)."""
