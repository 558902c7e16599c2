"""The JSON, JUnit XML and HTML reports: a real run against the reference merchant, plus checks
whose merchant answered garbage, markup and the access key itself.
"""

from __future__ import annotations

import html
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from simulator.checks import Check, Finding, Severity, Verdict, select
from simulator.cli import main
from simulator.engine.record import run_record
from simulator.engine.run import CheckResult, Run, reproduce_command, run_checks
from simulator.redaction import MAX_BODY_CHARS, REDACTED, body_text, printable, redact
from simulator.report import html as html_report
from simulator.report import junit as junit_report
from simulator.settings import SETTINGS as SETTINGS_VARIABLES
from simulator.settings import Settings, open_target
from simulator.transport import Exchange

SETTINGS = Settings(
    url=None,
    protocol="v2",
    access_key=None,
    sync_url=None,
    sync_key=None,
    rsa_public_key=None,
    timeout=10.0,
)
REAL_CHECKS = ["lifecycle.full", "security.v1-authtoken-wrong", "contract.http-200-json"]
HOSTILE = "<script>alert(1)</script>"
NO_CONSEQUENCE = "no failure here leads to a published delisting consequence"


def _synthetic_check(check_id: str, severity: Severity) -> Check:
    return Check(
        id=check_id,
        title=f"A synthetic {severity.value} check <b>bold</b>.",
        severity=severity,
        rule="§6",
        doc="Made up by the test: its merchant answers garbage.",
        drive=lambda ctx: None,
    )


def _exchange(access_key: str, **overrides: Any) -> Exchange:
    fields = {
        "interface": "produce",
        "protocol": "v2",
        "activity": "newInstance",
        "method": "POST",
        "url": f"http://merchant.invalid/produceAPI?echo={access_key}",
        "fields": {"activity": "newInstance"},
        "request_headers": {"Content-Type": "application/json", "X-Echo": access_key},
        "request_body": b'{"activity":"newInstance"}',
        "started_at": time.time(),
        "label": f"newInstance {HOSTILE}",
        "status": 200,
        "response_headers": {"Content-Type": "text/html", "X-Key": access_key},
        "response_body": (
            b"\x00\x07garbage \xff\xfe not UTF-8 "
            + HOSTILE.encode()
            + b" key="
            + access_key.encode()
            + b' {"resultCode":"000000"}'
        ),
        "elapsed": 0.0123,
    }
    return Exchange(**(fields | overrides))


@pytest.fixture(scope="module")
def run() -> Run:
    """A real run of a few checks, plus a failed, a warned and an unanswered synthetic check."""
    with open_target(SETTINGS) as target:
        run = run_checks(target, select(REAL_CHECKS))
    key = target.access_key
    garbage = _exchange(key)
    unanswered = _exchange(
        key, status=None, response_headers={}, response_body=b"", error=f"connection reset ({key})\x1b[31m"
    )
    failed = CheckResult(
        _synthetic_check("contract.synthetic-garbage", Severity.ERROR),
        Verdict.FAILED,
        findings=[
            Finding(f"the answer is not JSON {HOSTILE} key {key}", [garbage]),
            Finding("nothing came back", [unanswered]),
        ],
        exchanges=[garbage, unanswered],
        duration=0.5,
    )
    warned_exchange = _exchange(key, label="queryInstance, slow")
    warned = CheckResult(
        _synthetic_check("timing.synthetic-slow", Severity.WARNING),
        Verdict.WARNED,
        findings=[Finding("answered in 9 s, close to the deadline", [warned_exchange])],
        exchanges=[warned_exchange],
        duration=0.25,
    )
    run.results += [failed, warned]
    run.exchanges += [garbage, unanswered]  # the warned check's exchange is reachable only by its finding
    return run


@pytest.fixture(scope="module")
def record(run: Run) -> dict[str, Any]:
    return run_record(
        run, {result.check.id: reproduce_command({}, result.check.id) for result in run.results}
    )


@pytest.fixture(scope="module")
def junit(record: dict[str, Any]) -> ET.Element:
    return ET.fromstring(junit_report.render(record).encode("utf-8"))


@pytest.fixture(scope="module")
def page(record: dict[str, Any]) -> str:
    return html_report.render(record)


def _case(junit: ET.Element, check_id: str) -> ET.Element:
    (case,) = [case for case in junit.iter("testcase") if case.get("name") == check_id]
    return case


# --- the record ----------------------------------------------------------------------------------


def test_record_holds_every_check_and_exchange(run: Run, record: dict[str, Any]) -> None:
    assert [check["id"] for check in record["checks"]] == [result.check.id for result in run.results]
    assert record["summary"] == {"passed": 2, "failed": 1, "warned": 1, "skipped": 1}
    assert record["exit_code"] == 1
    # A42: a failed check is not "a delisting risk" as such; the verdict names its consequence
    verdict = record["delisting"]
    assert verdict["reached"] is False
    assert [(item["check"], item["rule"]) for item in verdict["consequences"]] == [
        ("contract.synthetic-garbage", "frequent failures")
    ]
    assert verdict["headline"].startswith("Delisting verdict: 1 failed check counts")
    ids = {exchange["id"] for exchange in record["exchanges"]}
    for check in record["checks"]:
        assert set(check["exchanges"]) <= ids
        assert all(set(finding["exchanges"]) <= ids for finding in check["findings"])
    json.loads(json.dumps(record, ensure_ascii=False))


def test_redact_catches_the_spellings_a_merchant_echoes() -> None:
    key = 'a+b/c"d'
    for echoed in (key, "a%2Bb%2Fc%22d", "a%2Bb/c%22d", "a%2Bb%2Fc%22d", r"a+b/c\"d"):
        assert redact(f"x {echoed} y", [key]) == f"x {REDACTED} y"


def test_a_cut_body_shows_no_part_of_a_key() -> None:
    key = "k" * 20
    body = b"x" * (MAX_BODY_CHARS - 10) + key.encode()
    assert "kkkkk" not in body_text(body, [key])


def test_printable_spells_out_control_characters() -> None:
    assert printable("a\x00b\x07\x1b\ud800\tc\n") == "a\\x00b\\x07\\x1b\\ud800\tc\n"


# --- no secret anywhere ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "render",
    [lambda record: json.dumps(record, ensure_ascii=False), junit_report.render, html_report.render],
    ids=["json", "junit", "html"],
)
def test_no_report_shows_a_key(
    run: Run, record: dict[str, Any], render: Callable[[dict[str, Any]], str]
) -> None:
    text = render(record)
    for secret in run.target.secrets:
        assert secret not in text
    assert REDACTED in text


# --- JUnit -------------------------------------------------------------------------------------------


def test_junit_counts(junit: ET.Element, record: dict[str, Any]) -> None:
    assert junit.tag == "testsuites"
    (suite,) = junit.findall("testsuite")
    assert suite.get("name") == "koosim verify"
    for element in (junit, suite):
        assert element.get("tests") == str(len(record["checks"])) == "5"
        assert element.get("failures") == "1"
        assert element.get("errors") == "0"
        assert element.get("skipped") == "1"
        assert float(element.get("time", "-1")) >= 0
    assert suite.get("timestamp", "").startswith(time.strftime("%Y-", time.gmtime(record["started_at"])))
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == [check["id"] for check in record["checks"]]
    assert {case.get("classname") for case in cases} == {
        "koosim.lifecycle",
        "koosim.security",
        "koosim.contract",
        "koosim.timing",
    }
    assert len(suite.findall("testcase/failure")) == 1
    assert len(suite.findall("testcase/skipped")) == 1


def test_junit_properties(junit: ET.Element, record: dict[str, Any]) -> None:
    properties = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert properties["target.url"] == record["target"]["url"]
    assert properties["target.protocol"] == "v2"
    assert properties["seed"] == "0"
    assert properties["run_id"] == record["run_id"]
    assert properties["assumption.resend_schedule"] == record["assumptions"]["resend schedule"]


def test_junit_failure_holds_findings_exchanges_rule_and_reproduction(junit: ET.Element) -> None:
    failure = _case(junit, "contract.synthetic-garbage").find("failure")
    assert failure is not None
    assert failure.get("type") == "error"
    assert failure.get("message", "").startswith("the answer is not JSON <script>")
    text = failure.text or ""
    assert "protocol.md §6 (error)" in text
    assert "→ POST http://merchant.invalid/produceAPI?echo=" in text
    assert '{"activity":"newInstance"}' in text
    assert "← HTTP 200 in 12.3 ms" in text
    assert "\\x00\\x07garbage" in text  # the garbage is shown, spelled out
    assert "not UTF-8" in text
    assert "nothing came back" in text
    assert "no answer after 12.3 ms: connection reset ([redacted])\\x1b[31m" in text
    assert "reproduce: koosim verify --checks contract.synthetic-garbage" in text


def test_junit_warning_is_not_a_failure(junit: ET.Element) -> None:
    case = _case(junit, "timing.synthetic-slow")
    assert case.find("failure") is None
    out = case.findtext("system-out") or ""
    assert out.startswith("WARNING")
    assert "close to the deadline" in out


def test_junit_skipped_and_passed(junit: ET.Element) -> None:
    skipped = _case(junit, "security.v1-authtoken-wrong").find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "applies to v1 only"
    passed = _case(junit, "lifecycle.full")
    assert list(passed) == []
    assert float(passed.get("time", "0")) > 0


def test_junit_has_no_character_xml_forbids(record: dict[str, Any]) -> None:
    text = junit_report.render(record)
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f]", text)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')


# --- HTML ----------------------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Collects the tags of a page and fails on an element closed out of order."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    return parser


def test_html_is_well_nested_and_self_contained(page: str) -> None:
    parsed = _parse(page)
    tags = {tag for tag, _ in parsed.tags}
    assert page.startswith("<!DOCTYPE html>")
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    for tag, attrs in parsed.tags:
        for name in ("src", "href"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(name) or ""), (tag, attrs)
    assert not re.search(r"@import|url\(", page)


def test_html_escapes_the_merchant(page: str) -> None:
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page
    assert "\\x00\\x07garbage" in page
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f]", page)


def test_html_has_a_details_element_per_exchange(page: str, record: dict[str, Any]) -> None:
    details = [attrs for tag, attrs in _parse(page).tags if tag == "details"]
    shown_per_check = [
        set(check["exchanges"]) | {e for finding in check["findings"] for e in finding["exchanges"]}
        for check in record["checks"]
    ]
    assert len(details) == sum(len(shown) for shown in shown_per_check)
    ids = [attrs["id"] or "" for attrs in details]
    assert len(set(ids)) == len(ids)
    for exchange in record["exchanges"]:
        assert any(i.endswith(f"--{exchange['id']}") for i in ids)
    cited_open = [attrs for attrs in details if "open" in attrs]
    assert len(cited_open) == 3  # the exchanges the findings cite open by themselves


def test_html_header(page: str, record: dict[str, Any]) -> None:
    assert record["run_id"] in page
    assert html.escape(record["delisting"]["headline"]) in page
    assert "publish no number" in page
    assert "resend schedule" in page
    assert "protocol.md §6" in page
    for verdict, count in record["summary"].items():
        assert f"<strong>{count}</strong> {verdict}" in page


def test_html_says_when_no_failure_leads_to_a_consequence(record: dict[str, Any]) -> None:
    checks = [check for check in record["checks"] if check["verdict"] != "failed"]
    clean = {name: value for name, value in record.items() if name != "delisting"} | {"checks": checks}
    assert NO_CONSEQUENCE in html_report.render(clean)


def test_a_record_written_before_verdicts_still_shows_one(record: dict[str, Any]) -> None:
    """A version-1 JSON record (``delisting_risk``, no ``delisting``) is read by recomputing the
    verdict from its checks: every report still shows it."""
    old = {name: value for name, value in record.items() if name != "delisting"}
    old |= {"schema_version": 1, "delisting_risk": True}
    headline = record["delisting"]["headline"]
    assert html.escape(headline) in html_report.render(old)
    properties = {
        prop.get("name"): prop.get("value")
        for prop in ET.fromstring(junit_report.render(old).encode("utf-8")).iter("property")
    }
    assert properties["delisting.verdict"] == headline
    assert properties["delisting.reached"] == "false"


# --- the command line -------------------------------------------------------------------------------------


def test_verify_writes_all_three_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    junit_path, json_path, html_path = (
        tmp_path / "out.xml",
        tmp_path / "out.json",
        tmp_path / "r" / "out.html",
    )
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)  # no koosim.toml of the working directory
    result = runner.invoke(
        main,
        [
            "verify",
            "--checks",
            "lifecycle.*",
            "--junit",
            str(junit_path),
            "--json",
            str(json_path),
            "--html",
            str(html_path),
        ],
        env={variable: None for variable in SETTINGS_VARIABLES.values()},
    )
    assert result.exit_code == 0, result.output
    record = json.loads(json_path.read_text(encoding="utf-8"))
    assert record["summary"]["failed"] == 0
    assert record["checks"] and all(check["id"].startswith("lifecycle.") for check in record["checks"])
    suite = ET.parse(junit_path).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(record["checks"]))
    assert suite.get("failures") == "0"
    page = html_path.read_text(encoding="utf-8")
    _parse(page)
    assert NO_CONSEQUENCE in page
    assert page.count("<details") == sum(len(check["exchanges"]) for check in record["checks"])
