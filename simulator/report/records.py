"""A run as plain data, secrets redacted: what the JSON report holds and other reporters read.

Redaction happens here, once, so no reporter can forget it: every string of an exchange is
scrubbed of the target's keys before it leaves this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import chain
from typing import Any
from urllib.parse import quote, quote_plus

from simulator.checks import Verdict
from simulator.needles import may_contain
from simulator.suite import CheckResult, Run
from simulator.transport import Exchange

REDACTED = "[redacted]"
MAX_BODY_CHARS = 4000
"""Bodies longer than this are cut in reports: a merchant may answer megabytes of garbage."""

SCHEMA_VERSION = 1


_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
"""Control characters but tab/LF/CR, lone surrogates, U+FFFE/U+FFFF: XML 1.0 forbids most of
them, HTML calls them parse errors, and a terminal would obey them."""


@lru_cache(maxsize=4096)
def _spellings(secret: str) -> tuple[str, ...]:
    """A secret as a merchant may echo it: raw, JSON-escaped, URL-encoded; the longest first."""
    spellings = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]} | {
        encode(secret, safe=safe) for encode in (quote, quote_plus) for safe in ("", "/")
    }
    return tuple(sorted(spellings, key=len, reverse=True))


@lru_cache(maxsize=32)
def _replacements(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """Every spelling of every secret, in the order :func:`redact` replaces them (cached: a run
    redacts every string of every exchange with the same secrets)."""
    return tuple(chain.from_iterable(map(_spellings, filter(None, secrets))))


def redact(text: str, secrets: Iterable[str]) -> str:
    replacements = _replacements(tuple(secrets))
    if not may_contain(text, replacements):  # what the replacements would leave
        return text
    for spelling in replacements:
        text = text.replace(spelling, REDACTED)
    return text


def printable(text: str) -> str:
    """``text`` with the characters of :data:`_UNPRINTABLE` written as ``\\xNN`` / ``\\uNNNN``.

    Merchants answer garbage bytes; a report must show them, and must stay a well-formed file.
    """
    return _UNPRINTABLE.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text
    )


def body_text(body: bytes, secrets: Iterable[str]) -> str:
    """A body as text a person can read: UTF-8 (undecodable bytes shown as �), redacted, cut,
    control characters spelled out (a console shows it, and a terminal obeys escape sequences)."""
    text = redact(body.decode("utf-8", errors="replace"), secrets)  # before the cut: no half key
    if len(text) > MAX_BODY_CHARS:
        text = text[:MAX_BODY_CHARS] + f"… [{len(body)} bytes in all]"
    return printable(text)


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
