"""Polling queryInstance after an asynchronous newInstance (docs/protocol.md §4.1-c, §10.2, U43).

Every check that expects queryInstance to list an instance just created waits for it the way
the marketplace does, so a merchant that provisions asynchronously (which §4.1-c allows) is not
failed for it. How often the marketplace polls and when it gives up is on no page (ASSUMPTION
U43): an instance still pending after koosim's polls is a warning (:func:`still_provisioning`),
never an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from simulator.checks.base import Context
from simulator.clock import format_duration
from simulator.model import query_fields
from simulator.protocol import ResultCode
from simulator.transport import Exchange


@dataclass(frozen=True)
class Polling:
    """How the marketplace polls queryInstance for an instance still being provisioned.

    No page gives the cadence or when the marketplace gives up (§10.2, ASSUMPTION U43). koosim
    polls ``polls`` times in all, ``interval`` of marketplace time apart, on the run's clock (a
    minute of marketplace time passes in 1/60 s at the run's default scale).
    """

    interval: timedelta = timedelta(minutes=1)
    polls: int = 10

    def describe(self) -> str:
        return f"{self.polls} queryInstance polls {format_duration(self.interval)} apart (ASSUMPTION U43)"


POLLING = Polling()
"""The schedule the checks poll on (a parameter: tests and the clock may pass another)."""


def wait_between_polls(ctx: Context, interval: timedelta) -> None:
    """Let ``interval`` of marketplace time pass on the run's clock (§10: ×3600 by default, so a
    minute takes 1/60 s; a frozen clock jumps)."""
    ctx.clock.sleep(interval)


PENDING_CODE = ResultCode.PROCESSING
"""``000004`` (request being processed, §3.2): a queryInstance answer saying "not yet"."""


def listed_ids(exchange: Exchange) -> list[Any]:
    """The instanceIds a queryInstance answer lists in ``info``."""
    info = exchange.answer_field("info")
    if not isinstance(info, list):
        return []
    return [item.get("instanceId") for item in info if isinstance(item, dict)]


def pending(exchange: Exchange, instance_ids: Sequence[str]) -> bool:
    """Whether a queryInstance answer says the instances are not ready yet: ``000004`` (§3.2), or
    success without the instance information the marketplace keeps asking for (§10.2)."""
    if exchange.result_code == PENDING_CODE.value:
        return True
    if exchange.result_code != ResultCode.SUCCESS.value:
        return False
    listed = listed_ids(exchange)
    return any(instance_id not in listed for instance_id in instance_ids)


def poll_until_listed(
    ctx: Context,
    instance_ids: Sequence[str],
    label: str = "queryInstance",
    polling: Polling = POLLING,
    sleep: Callable[[timedelta], None] | None = None,
) -> list[Exchange]:
    """queryInstance of ``instance_ids`` until the answer lists them all, is a refusal, or the
    polls run out (§10.2, U43); every poll's exchange, in order. The last one is the verdict.
    ``sleep`` waits between polls (default :func:`wait_between_polls`)."""
    polls: list[Exchange] = []
    fields = query_fields(*instance_ids)
    for attempt in range(1, polling.polls + 1):
        suffix = "" if attempt == 1 else f" (poll {attempt})"
        exchange = ctx.send(fields, f"{label}{suffix}")
        polls.append(exchange)
        if not pending(exchange, instance_ids) or attempt == polling.polls:
            break
        if sleep is None:
            wait_between_polls(ctx, polling.interval)
        else:
            sleep(polling.interval)
    return polls


def still_provisioning(
    ctx: Context, polls: Sequence[Exchange], instance_ids: Sequence[str], what: str
) -> bool:
    """Whether the last of ``polls`` still says the instances are being provisioned; if so, a
    warning naming U43 is recorded (the give-up point is koosim's, not the marketplace's), and
    the caller judges nothing more of that answer."""
    final = polls[-1]
    if not pending(final, instance_ids):
        return False
    listed = listed_ids(final)
    missing = [instance_id for instance_id in instance_ids if instance_id not in listed]
    ctx.warn(
        f"{what}: still provisioning after koosim's assumed polling (U43): after {len(polls)} polls "
        f"the last answer was {final.result_code or 'no resultCode'}"
        f"{f' without {len(missing)} of the {len(instance_ids)} instance(s)' if missing else ''} "
        f"({POLLING.describe()}; the marketplace's real cadence and give-up point are on no page)",
        final,
    )
    return True
