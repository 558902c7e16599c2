"""JUnit XML for CI viewers (GitLab, Jenkins, GitHub test reporters): one testcase per check.

A failed check is a ``<failure>``; a warned one passes and says why in ``<system-out>`` (the
marketplace states no rule it breaks, so CI must not go red); a skipped one is ``<skipped>``.
The tree is built with ElementTree, which escapes every value; control characters a merchant
answered are written as ``\\xNN`` text because XML 1.0 cannot carry them at all.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from simulator.engine.delisting import record_verdict
from simulator.engine.record import exchange_times
from simulator.redaction import printable

SUITE_NAME = "koosim verify"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


def render(record: Mapping[str, Any]) -> str:
    """The run ``record`` (from :func:`~simulator.engine.record.run_record`) as JUnit XML."""
    checks = record["checks"]
    exchanges = {exchange["id"]: exchange for exchange in record["exchanges"]}
    counts = {
        "tests": str(len(checks)),
        "failures": str(sum(check["verdict"] == "failed" for check in checks)),
        "errors": "0",
        "skipped": str(sum(check["verdict"] == "skipped" for check in checks)),
        "time": _seconds(_run_seconds(record)),
    }
    root = ET.Element("testsuites", {"name": "koosim", **counts})
    suite = ET.SubElement(
        root, "testsuite", {"name": SUITE_NAME, **counts, "timestamp": _timestamp(record["started_at"])}
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(record):
        ET.SubElement(properties, "property", {"name": _text(name), "value": _text(value)})
    for check in checks:
        suite.append(_testcase(check, exchanges))
    ET.indent(root)
    return XML_DECLARATION + ET.tostring(root, encoding="unicode") + "\n"


def _properties(record: Mapping[str, Any]) -> list[tuple[str, Any]]:
    target = record["target"]
    verdict = record_verdict(record)
    properties = [
        ("target.url", target["url"]),
        ("target.protocol", target["protocol"]),
        ("target.sync_url", target["sync_url"]),
        ("target.timeout_s", target["timeout_s"]),
        ("seed", record["seed"]),
        ("run_id", record["run_id"]),
        ("delisting.reached", str(verdict.reached).lower()),
        ("delisting.verdict", verdict.headline),
        *((f"delisting.{number}", line) for number, line in enumerate(verdict.lines(), start=1)),
    ]
    if record.get("partial"):  # interrupted, or stopped at the first failure: not every check ran
        properties.append(("partial", record["partial"]))
    properties += [
        (f"assumption.{name.replace(' ', '_')}", value) for name, value in record["assumptions"].items()
    ]
    return properties


def _testcase(check: Mapping[str, Any], exchanges: Mapping[str, Mapping[str, Any]]) -> ET.Element:
    family = check["id"].split(".", 1)[0]
    case = ET.Element(
        "testcase",
        {
            "classname": _text(f"koosim.{family}"),
            "name": _text(check["id"]),
            "time": _seconds(check["duration_ms"] / 1000),
        },
    )
    verdict = check["verdict"]
    if verdict == "failed":
        failure = ET.SubElement(
            case, "failure", {"message": _text(_first_finding(check)), "type": _text(check["severity"])}
        )
        failure.text = _text(_details(check, exchanges))
    elif verdict == "warned":
        out = ET.SubElement(case, "system-out")
        out.text = _text(f"WARNING: {_first_finding(check)}\n\n{_details(check, exchanges)}")
    elif verdict == "skipped":
        ET.SubElement(case, "skipped", {"message": _text(check["evidence"])})
    return case


def _first_finding(check: Mapping[str, Any]) -> str:
    findings = check["findings"]
    first: str = findings[0]["message"] if findings else check["evidence"]
    return first


def _details(check: Mapping[str, Any], exchanges: Mapping[str, Mapping[str, Any]]) -> str:
    """Everything a person needs to see why a check did not pass, as plain text."""
    rule = f"rule: protocol.md {check['rule']} ({check['severity']})."
    lines = [check["title"], f"{rule} {check['doc']}" if check["doc"] else rule]
    for finding in check["findings"]:
        lines += ["", f"✗ {finding['message']}"]
        for exchange_id in finding["exchanges"]:
            exchange = exchanges.get(exchange_id)
            if exchange is None:
                lines.append(f"  (exchange {exchange_id} is not in the record)")
            else:
                lines += _exchange_lines(exchange)
    if check.get("reproduce"):
        lines += ["", f"reproduce: {check['reproduce']}"]
    return "\n".join(lines)


def _exchange_lines(exchange: Mapping[str, Any]) -> list[str]:
    request, response = exchange["request"], exchange["response"]
    lines = [
        f"  [{exchange['label']}] sent {exchange_times(exchange)}",
        f"  → {request['method']} {request['url']}",
    ]
    if request["body"]:
        lines.append(f"    {request['body']}")
    if response is None:
        lines.append(f"  ← no answer after {exchange['elapsed_ms']:g} ms: {exchange['error'] or 'unknown'}")
    else:
        lines.append(f"  ← HTTP {response['status']} in {exchange['elapsed_ms']:g} ms")
        lines.append(f"    {response['body']}" if response["body"] else "    (empty body)")
    return lines


def _text(value: Any) -> str:
    return printable(str(value))


def _seconds(seconds: float) -> str:
    return f"{max(seconds, 0.0):.3f}"


def _run_seconds(record: Mapping[str, Any]) -> float:
    if record["finished_at"] is None:
        checks_ms: float = sum(check["duration_ms"] for check in record["checks"])
        return checks_ms / 1000
    elapsed: float = record["finished_at"] - record["started_at"]
    return elapsed


def _timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
