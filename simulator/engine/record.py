"""A run as plain data, secrets redacted: what the JSON report, the run history and every
reporter read.

Records are made here, once, so no reporter can forget redaction: every string of an exchange
is scrubbed of the target's keys (by :mod:`simulator.redaction`) before it leaves this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from simulator.checks import Verdict
from simulator.clock import isoformat
from simulator.engine.delisting import run_verdict
from simulator.engine.run import CheckResult, Run
from simulator.openapi import InboundCall
from simulator.redaction import printable, readable_body, redact, redact_data, redact_each
from simulator.transport import Exchange

SCHEMA_VERSION = 2
"""2: ``delisting`` (the verdict of engine/delisting.py) replaced version 1's ``delisting_risk``
flag; readers take either (:func:`simulator.engine.delisting.record_verdict`)."""


def exchange_record(exchange: Exchange, secrets: Iterable[str]) -> dict[str, Any]:
    answered = exchange.answered
    request_headers, response_headers = exchange.request_headers, exchange.response_headers
    texts = [
        exchange.label,
        exchange.activity,
        exchange.url,
        *request_headers.values(),
        exchange.request_body.decode("utf-8", errors="replace"),
        *(response_headers.values() if answered else ()),
        exchange.response_body.decode("utf-8", errors="replace") if answered else "",
        (exchange.result_code or "") if answered else "",
        exchange.error or "",
    ]
    # every string of the record in one redaction pass (redact_each), then taken off in order
    clean = iter(redact_each(texts, secrets))
    label, activity, url = next(clean), next(clean), next(clean)
    request = {
        "method": exchange.method,
        "url": url,
        "headers": {name: next(clean) for name in request_headers},
        "body": readable_body(next(clean), len(exchange.request_body)),
    }
    response = None
    if answered:
        response = {
            "status": exchange.status,
            "headers": {name: next(clean) for name in response_headers},
            "body": readable_body(next(clean), len(exchange.response_body)),
        }
    else:
        next(clean)  # the body an answer would have had
    result_code, error = next(clean), next(clean)
    if response is not None:
        response["result_code"] = None if exchange.result_code is None else result_code
    return {
        "id": exchange.id,
        "label": label,
        "interface": exchange.interface,
        "protocol": exchange.protocol,
        "activity": activity,
        "attempt": exchange.attempt,
        "started_at": exchange.started_at,
        "market_at": None if exchange.market_at is None else isoformat(exchange.market_at),
        "elapsed_ms": round(exchange.elapsed * 1000, 1),
        "request": request,
        "response": response,
        "error": None if exchange.error is None else error,
    }


INBOUND_INTERFACE = "marketplace"
"""The ``interface`` of an inbound exchange: the marketplace's open API, called by the merchant."""


def inbound_exchange(call: InboundCall) -> Exchange:
    """An inbound call as an :class:`Exchange` (request: the merchant's; answer: koosim's), for
    the history and every reporter that shows exchanges."""
    return Exchange(
        interface=INBOUND_INTERFACE,
        protocol="openapi",
        activity=call.api or "unknown",
        method=call.method,
        url=call.url,
        fields=dict(call.fields),
        request_headers=dict(call.request_headers),
        request_body=call.request_body,
        started_at=call.started_at,
        id=call.id,
        label=call.label,
        status=call.status,
        response_headers={"Content-Type": "application/json"},
        response_body=call.response_body,
        elapsed=call.elapsed,
    )


def inbound_record(call: InboundCall, secrets: Iterable[str]) -> dict[str, Any]:
    """An inbound call's record: an exchange record plus ``direction`` ("merchant →
    marketplace") and ``verdict`` (the gateway's and the API's judgement, ``InboundCall.verdict``)."""
    secrets = tuple(secrets)
    return exchange_record(inbound_exchange(call), secrets) | {
        "direction": call.direction,
        "verdict": redact_data(call.verdict, secrets),
    }


def exchange_times(record: Mapping[str, Any]) -> str:
    """When an exchange was sent, on both clocks, for every report: ``wall 2026-11-30T00:50:01.250Z,
    marketplace 2026-11-30T03:50:01.250Z`` (the marketplace one only when it was recorded)."""
    wall = isoformat(datetime.fromtimestamp(record["started_at"], UTC))
    market = record.get("market_at")
    return f"wall {wall}, marketplace {market}" if market else f"wall {wall}"


def result_record(result: CheckResult, secrets: Iterable[str]) -> dict[str, Any]:
    check = result.check
    return {
        "id": check.id,
        "title": check.title,
        "doc": check.doc,
        "rule": check.rule,
        "severity": check.severity.value,
        "verdict": result.verdict.value,
        "evidence": printable(redact(result.evidence, secrets)),  # findings quote the merchant
        "duration_ms": round(result.duration * 1000, 1),
        "findings": [
            {
                "message": printable(redact(finding.message, secrets)),
                "exchanges": [e.id for e in finding.exchanges],
            }
            for finding in result.findings
        ],
        "exchanges": [e.id for e in result.exchanges],
    }


def run_record(run: Run, reproduce: dict[str, str] | None = None) -> dict[str, Any]:
    """The whole run as JSON-ready data; ``reproduce`` maps a check id to its reproduction command."""
    secrets = run.target.secrets
    exchanges = {e.id: e for e in run.exchanges}
    for result in run.results:  # per-exchange checks point at exchanges the active ones made
        for finding in result.findings:
            exchanges.update({e.id: e for e in finding.exchanges})
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run.id,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "target": {
            "url": redact(run.target.url, secrets),
            "protocol": run.target.protocol,
            "sync_url": redact(run.target.sync_call_url(""), secrets),
            "timeout_s": run.target.timeout,
        },
        "seed": run.seed,
        "clock": run.clock,
        "assumptions": run.assumptions,
        "summary": {verdict.value: run.count(verdict) for verdict in Verdict},
        "exit_code": run.exit_code,
        "checks": [
            result_record(result, secrets)
            | {"reproduce": redact((reproduce or {}).get(result.check.id) or "", secrets) or None}
            for result in run.results
        ],
        "exchanges": [exchange_record(exchange, secrets) for exchange in exchanges.values()],
        "inbound": [inbound_record(call, secrets) for call in list(run.inbound)],
    }
    verdict = run_verdict(record["checks"], record["exchanges"], run.target.protocol)
    # the verdict's text is koosim's own, but may name an activity the merchant's answer set
    record["delisting"] = verdict.as_dict()
    return record
