"""A run as plain data, secrets redacted: what the JSON report, the run history and every
reporter read.

Records are made here, once, so no reporter can forget redaction: every string of an exchange
is scrubbed of the target's keys (by :mod:`simulator.redaction`) before it leaves this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from simulator.checks import Verdict
from simulator.engine.run import CheckResult, Run
from simulator.redaction import body_text, printable, redact
from simulator.transport import Exchange

SCHEMA_VERSION = 1


def exchange_record(exchange: Exchange, secrets: Iterable[str]) -> dict[str, Any]:
    secrets = tuple(secrets)
    return {
        "id": exchange.id,
        "label": redact(exchange.label, secrets),
        "interface": exchange.interface,
        "protocol": exchange.protocol,
        "activity": redact(exchange.activity, secrets),
        "attempt": exchange.attempt,
        "started_at": exchange.started_at,
        "elapsed_ms": round(exchange.elapsed * 1000, 1),
        "request": {
            "method": exchange.method,
            "url": redact(exchange.url, secrets),
            "headers": {name: redact(value, secrets) for name, value in exchange.request_headers.items()},
            "body": body_text(exchange.request_body, secrets),
        },
        "response": None
        if not exchange.answered
        else {
            "status": exchange.status,
            "headers": {name: redact(value, secrets) for name, value in exchange.response_headers.items()},
            "body": body_text(exchange.response_body, secrets),
            "result_code": None if exchange.result_code is None else redact(exchange.result_code, secrets),
        },
        "error": None if exchange.error is None else redact(exchange.error, secrets),
    }


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
    return {
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
        "assumptions": run.assumptions,
        "summary": {verdict.value: run.count(verdict) for verdict in Verdict},
        "exit_code": run.exit_code,
        "delisting_risk": run.delisting_risk,
        "checks": [
            result_record(result, secrets)
            | {"reproduce": redact((reproduce or {}).get(result.check.id) or "", secrets) or None}
            for result in run.results
        ],
        "exchanges": [exchange_record(exchange, secrets) for exchange in exchanges.values()],
    }
