"""Scenario files: an ordered list of marketplace calls and the answers the merchant must give.

A scenario is YAML, checked against ``contracts/scenario/scenario.schema.json`` and then for
what a schema cannot say (a reference names an *earlier* step, an activity takes the keys it is
given). Anything wrong ends in one :class:`ScenarioError` line naming the file, the step and
the problem. The format is documented in ``docs/scenarios.md``; :mod:`simulator.engine.player` plays
a loaded :class:`Scenario`, :mod:`simulator.engine.explore` writes them.

Values of earlier steps are written ``${step.name}`` inside strings of ``fields``: ``name`` is
looked up in that step's answer, then in the call it sent (``${new.instanceId}``,
``${new.orderId}``); ``${step.response.x}`` and ``${step.request.x}`` say which one, and a
dotted path goes deeper (``${q.response.info.0.instanceId}``). ``$${`` is a literal ``${``.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any, cast

import yaml
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match

from simulator.clock import format_duration, parse_duration
from simulator.errors import UsageError
from simulator.protocol.vocabulary import (
    APPINFO_ANSWERS,
    LICENSE_ACTIVITIES,
    LICENSE_ASYNC,
    LICENSE_CHANGES,
    ORDERING_ACTIVITIES,
)
from simulator.resources import data_dir

SYNC_PREFIX = "sync:"
SUFFIXES = (".yaml", ".yml")

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_-]*)((?:\.[A-Za-z0-9_]+)*)\}")
_ANY_REFERENCE = re.compile(r"\$\{[^}]*\}?")


class ScenarioError(UsageError):
    """A scenario file cannot be used; the message is one line naming the file and the step."""


class Unresolved(Exception):
    """A reference names a value the earlier step did not produce (it failed, or answered garbage)."""


@dataclass(frozen=True)
class Expect:
    """What the merchant must answer to every copy of a step's call."""

    result_code: str | None = None
    same_instance_as: str | None = None
    schema: bool = False
    appinfo_decrypts: bool = False
    body_sign: bool = False
    listed: tuple[str, ...] = ()
    not_listed: tuple[str, ...] = ()

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.result_code is not None:
            data["resultCode"] = self.result_code
        if self.same_instance_as is not None:
            data["same_instance_as"] = self.same_instance_as
        for name in ("schema", "appinfo_decrypts", "body_sign"):
            if getattr(self, name):
                data[name] = True
        if self.listed:
            data["listed"] = list(self.listed)
        if self.not_listed:
            data["not_listed"] = list(self.not_listed)
        return data


@dataclass(frozen=True)
class Step:
    """One call of a scenario (or a pause: a step with only ``wait``)."""

    id: str
    activity: str | None = None
    """The call; for a ``resend`` step, the activity of the step it resends."""
    resend: str | None = None
    of: tuple[str, ...] = ()
    id_length: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    repeat: int = 1
    concurrent: int = 1
    wait: float = 0.0
    advance: timedelta | None = None
    """Marketplace time that passes before the call (``advance: 1h``), on the run's clock."""
    check: str | None = None
    expect: Expect = Expect()

    @property
    def is_sync(self) -> bool:
        return bool(self.activity and self.activity.startswith(SYNC_PREFIX))

    @property
    def call(self) -> str:
        """The activity as it goes on the wire: ``authSync`` for ``sync:authSync``."""
        return (self.activity or "").removeprefix(SYNC_PREFIX)

    @property
    def copies(self) -> int:
        return max(self.repeat, self.concurrent)

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id}
        if self.resend is not None:
            data["resend"] = self.resend
        elif self.activity is not None:
            data["activity"] = self.activity
        if self.of:
            data["of"] = (
                self.of[0] if len(self.of) == 1 and self.activity != "queryInstance" else list(self.of)
            )
        if self.id_length is not None:
            data["order"] = {"id_length": self.id_length}
        if self.fields:
            data["fields"] = dict(self.fields)
        for name, default in (("repeat", 1), ("concurrent", 1), ("wait", 0.0)):
            if getattr(self, name) != default:
                data[name] = getattr(self, name)
        if self.advance is not None:
            data["advance"] = format_duration(self.advance)
        if self.check is not None:
            data["check"] = self.check
        if expect := self.expect.to_data():
            data["expect"] = expect
        return data


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    description: str = ""
    protocol: str = "v2"
    seed: int | str = 0
    path: Path | None = None
    requires: tuple[str, ...] = ()
    """The interfaces the product must have (docs/protocol.md §1.2), besides those the steps call."""

    @property
    def needs(self) -> frozenset[str]:
        """Every interface the scenario needs: its ``requires`` and each step's call."""
        return frozenset(self.requires) | {step.call for step in self.steps if step.call}

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else self.name

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        data["protocol"] = self.protocol
        if self.requires:
            data["requires"] = list(self.requires)
        data["seed"] = self.seed
        data["steps"] = [step.to_data() for step in self.steps]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_data(), sort_keys=False, allow_unicode=True, width=100)


# --- references ----------------------------------------------------------------------------------


def references_in(value: Any) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Every ``${step.path}`` in ``value`` (strings in nested dicts and lists too)."""
    if isinstance(value, str):
        for match in _REFERENCE.finditer(value.replace("$${", "")):
            yield match.group(1), tuple(part for part in match.group(2).split(".") if part)
    elif isinstance(value, dict):
        for item in value.values():
            yield from references_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from references_in(item)


def _malformed_reference(value: Any) -> str | None:
    """The first ``${…}`` that is not a well-formed reference, if any."""
    if isinstance(value, str):
        text = value.replace("$${", "")
        for match in _ANY_REFERENCE.finditer(text):
            if not _REFERENCE.fullmatch(match.group(0)):
                return match.group(0)
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            if (found := _malformed_reference(item)) is not None:
                return found
    return None


Lookup = Callable[[str, tuple[str, ...]], Any]
"""``lookup(step_id, path)``: the value a reference names, or raise :class:`Unresolved`."""


def resolve(value: Any, lookup: Lookup) -> Any:
    """``value`` with every reference replaced by what ``lookup`` finds.

    A string that is exactly one reference becomes the value itself (a list stays a list);
    a reference inside a longer string is replaced by its text.
    """
    if isinstance(value, dict):
        return {name: resolve(item, lookup) for name, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, lookup) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole is not None:
        return lookup(whole.group(1), tuple(part for part in whole.group(2).split(".") if part))
    parts = value.split("$${")

    def substitute(match: re.Match[str]) -> str:
        found = lookup(match.group(1), tuple(part for part in match.group(2).split(".") if part))
        return found if isinstance(found, str) else json.dumps(found, ensure_ascii=False)

    return "${".join(_REFERENCE.sub(substitute, part) for part in parts)


def dig(value: Any, path: Sequence[str]) -> Any:
    """Follow ``path`` (member names, list indexes) into decoded JSON; raise KeyError when absent."""
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(part)
    return value


# --- loading -------------------------------------------------------------------------------------


@cache
def schema() -> dict[str, Any]:
    """The scenario format's JSON Schema (draft 2020-12)."""
    path = data_dir("contracts") / "scenario" / "scenario.schema.json"
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


def load(path: Path) -> Scenario:
    """Read, validate and return one scenario file; raise :class:`ScenarioError` on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ScenarioError(f"{path}: cannot read it: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: {_yaml_problem(exc, text)}") from None
    return parse(data, path)


_STEP_START = re.compile(r"^\s*-\s*id:\s*['\"]?([^'\"\s#]+)")


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """Where the YAML breaks: the step it is in (the last ``- id:`` above it), line and column."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"not valid YAML: {problem}"
    steps = [m.group(1) for line in text.splitlines()[: mark.line + 1] if (m := _STEP_START.match(line))]
    step = f"step {steps[-1]!r}, " if steps else ""
    return f"not valid YAML ({step}line {mark.line + 1}, column {mark.column + 1}): {problem}"


def parse(data: Any, path: Path | str) -> Scenario:
    """Build a :class:`Scenario` from decoded YAML, checking the schema and the references."""
    source = str(path)
    error = best_match(_validator().iter_errors(data))
    if error is not None:
        raise ScenarioError(_schema_problem(source, data, error))
    steps: list[Step] = []
    seen: dict[str, int] = {}
    protocol = data.get("protocol", "v2")
    for number, raw in enumerate(data["steps"], start=1):
        where = f"{source}: step {raw['id']!r} (#{number})"
        if raw["id"] in seen:
            raise ScenarioError(f"{where}: the id is already used by step #{seen[raw['id']]}")
        try:
            step = _step(raw, {s.id: s for s in steps}, protocol)
        except ValueError as problem:
            raise ScenarioError(f"{where}: {problem}") from None
        seen[step.id] = number
        steps.append(step)
    return Scenario(
        name=data["name"],
        description=" ".join(data.get("description", "").split()),
        protocol=protocol,
        requires=tuple(data.get("requires", ())),
        seed=data.get("seed", 0),
        steps=tuple(steps),
        path=Path(path) if isinstance(path, Path) else None,
    )


def _schema_problem(source: str, data: Any, error: ValidationError) -> str:
    parts = list(error.absolute_path)
    where = source
    if len(parts) >= 2 and parts[0] == "steps" and isinstance(parts[1], int):
        raw = data["steps"][parts[1]]
        step_id = raw.get("id") if isinstance(raw, dict) else None
        where += f": step {step_id!r} (#{parts[1] + 1})" if step_id is not None else f": step #{parts[1] + 1}"
        parts = parts[2:]
    key = ".".join(str(part) for part in parts)
    if error.validator == "enum" and parts and parts[-1] == "activity":
        known = [str(name) for name in cast(list[Any], error.validator_value)]
        close = difflib.get_close_matches(str(error.instance), known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
        problem = f"unknown activity {error.instance!r} ({hint})"
    elif error.validator == "type" and parts and parts[-1] == "resultCode":
        problem = (
            f'resultCode must be a quoted string such as "000000", not {error.instance!r} '
            "(YAML reads an unquoted 000000 as the number 0)"
        )
    elif error.validator == "additionalProperties":
        problem = f"{key + ': ' if key else ''}{error.message}{_key_hint(error)}"
    else:
        problem = f"{key + ': ' if key else ''}{_short(error)}"
    return f"{where}: {problem}"


def _key_hint(error: ValidationError) -> str:
    """`` (did you mean expect?)`` for each unexpected key close to one the schema knows."""
    known = list(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
    given = error.instance if isinstance(error.instance, dict) else {}
    hints = [
        f"{key} → {close[0]}"
        for key in given
        if key not in known and (close := difflib.get_close_matches(str(key), known, n=1))
    ]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def _short(error: ValidationError) -> str:
    value = repr(error.instance)
    if len(value) > 60 and error.message.startswith(value):
        return value[:60] + "…" + error.message[len(value) :]
    return error.message


def _step(raw: dict[str, Any], earlier: dict[str, Step], protocol: str) -> Step:
    """One validated step; ``earlier`` holds the steps before it. Raises ValueError."""

    def known(step_id: str, role: str) -> Step:
        if step_id == raw["id"]:
            raise ValueError(f"{role} names the step itself; it must name an earlier step")
        if step_id not in earlier:
            raise ValueError(f"{role} names {step_id!r}, which is not an earlier step of this scenario")
        return earlier[step_id]

    activity, resend = raw.get("activity"), raw.get("resend")
    if activity and resend:
        raise ValueError("give either activity or resend, not both")
    if resend:
        resent = known(resend, "resend")
        if resent.activity is None:
            raise ValueError(f"resend names {resend!r}, a pause, which has no call to resend")
        activity = resent.activity
    advance = parse_duration(raw["advance"]) if "advance" in raw else None
    if activity is None:
        if set(raw) - {"id", "wait", "advance"}:
            raise ValueError("a step needs an activity (or resend); only a pause has neither")
        if "wait" not in raw and advance is None:
            raise ValueError("a step needs an activity, a resend, a wait or an advance")
        return Step(id=raw["id"], wait=float(raw.get("wait", 0)), advance=advance)

    of = raw.get("of", ())
    of = (of,) if isinstance(of, str) else tuple(of)
    for step_id in of:
        known(step_id, "of")
    if of and (activity in ORDERING_ACTIVITIES or resend):
        raise ValueError(f"{'a resend' if resend else activity} takes no `of`: it is about its own order")
    if len(of) > 1 and activity != "queryInstance":
        raise ValueError("only queryInstance takes a list of steps in `of`")
    if "order" in raw and (activity not in ORDERING_ACTIVITIES or resend):
        raise ValueError("`order` shapes a new order: only newInstance and getLicense take it")
    if (activity in LICENSE_ACTIVITIES or activity == LICENSE_ASYNC) and protocol != "v2":
        raise ValueError(f"{activity} is a v2 call; the scenario is {protocol}")
    if activity in LICENSE_CHANGES and not of and "license" not in raw.get("fields", {}):
        raise ValueError(f"{activity} needs `of: <getLicense step>` or fields.license")
    fields = raw.get("fields", {})
    if activity == "updateInstanceStatus" and not resend and "status" not in fields:
        raise ValueError("updateInstanceStatus needs fields.status: FREEZE or UNFREEZE")
    if (bad := _malformed_reference(fields)) is not None:
        raise ValueError(f"malformed reference {bad!r}: write ${{step.name}}, or $${{ for a literal ${{")
    for step_id, _ in references_in(fields):
        known(step_id, f"the reference ${{{step_id}…}}")

    repeat, concurrent = raw.get("repeat", 1), raw.get("concurrent", 1)
    if repeat > 1 and concurrent > 1:
        raise ValueError("give repeat or concurrent, not both")
    expect = _expect(raw.get("expect", {}), activity, known)
    check = raw.get("check")
    if check is not None:
        from simulator.checks import catalog

        if check not in {c.id for c in catalog()}:
            raise ValueError(f"check {check!r} is not in the catalog; `koosim checks` lists them")
    return Step(
        id=raw["id"],
        activity=activity,
        resend=resend,
        of=of,
        id_length=raw.get("order", {}).get("id_length"),
        fields=fields,
        repeat=repeat,
        concurrent=concurrent,
        wait=float(raw.get("wait", 0)),
        advance=advance,
        check=check,
        expect=expect,
    )


def _expect(raw: dict[str, Any], activity: str, known: Callable[[str, str], Step]) -> Expect:
    same = raw.get("same_instance_as")
    if same is not None:
        if activity not in ORDERING_ACTIVITIES | {LICENSE_ASYNC}:
            raise ValueError(
                "same_instance_as applies to newInstance, getLicense and getLicenseAsync answers"
            )
        if known(same, "same_instance_as").activity not in ORDERING_ACTIVITIES | {LICENSE_ASYNC}:
            raise ValueError(
                f"same_instance_as names {same!r}, which is not a newInstance, getLicense or getLicenseAsync"
            )
    for key in ("listed", "not_listed"):
        if raw.get(key) and activity != "queryInstance":
            raise ValueError(f"{key} applies to queryInstance answers")
        for step_id in raw.get(key, ()):
            known(step_id, key)
    if raw.get("appinfo_decrypts") and activity not in APPINFO_ANSWERS:
        raise ValueError("appinfo_decrypts applies to newInstance and queryInstance answers")
    if raw.get("body_sign") and activity.startswith(SYNC_PREFIX):
        raise ValueError("body_sign applies to v1 produce answers; sync answers carry none")
    return Expect(
        result_code=raw.get("resultCode"),
        same_instance_as=same,
        schema=raw.get("schema", False),
        appinfo_decrypts=raw.get("appinfo_decrypts", False),
        body_sign=raw.get("body_sign", False),
        listed=tuple(raw.get("listed", ())),
        not_listed=tuple(raw.get("not_listed", ())),
    )


# --- the library ---------------------------------------------------------------------------------


def library_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    """The folders scenarios are looked up in: the user's (first, so they win), then the packaged one."""
    dirs = list(extra)
    with contextlib.suppress(FileNotFoundError):
        dirs.append(data_dir("scenarios"))
    return dirs


def scenario_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())


@dataclass(frozen=True)
class Entry:
    """A file of the library: its scenario, or why it cannot be loaded."""

    path: Path
    scenario: Scenario | None
    error: str | None = None


def discover(dirs: Iterable[Path]) -> list[Entry]:
    """Every scenario file of ``dirs``; one whose name an earlier folder already has is left out."""
    entries: list[Entry] = []
    names: set[str] = set()
    for directory in dirs:
        if not directory.is_dir():
            raise ScenarioError(f"{directory}: no such folder of scenarios")
        for path in scenario_files(directory):
            try:
                scenario = load(path)
            except ScenarioError as problem:
                entries.append(Entry(path, None, str(problem)))
                continue
            if scenario.name not in names:
                names.add(scenario.name)
                entries.append(Entry(path, scenario))
    return entries


def find(name_or_path: str, dirs: Sequence[Path]) -> list[Path]:
    """The file(s) ``name_or_path`` means: a file, a folder of scenarios, or a library name."""
    path = Path(name_or_path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = scenario_files(path)
        if not found:
            raise ScenarioError(f"{path}: the folder holds no .yaml scenario")
        return found
    # Folder by folder, yours before the library: in each, the file that declares the name (the
    # name `koosim scenarios` lists), else the file named after it. A later folder never wins.
    known: list[str] = []
    for directory in dirs:
        if not directory.is_dir():
            raise ScenarioError(f"{directory}: no such folder of scenarios")
        entries = [entry for entry in discover([directory]) if entry.scenario is not None]
        for entry in entries:
            if entry.scenario is not None and entry.scenario.name == name_or_path:
                return [entry.path]
        for candidate in scenario_files(directory):
            if candidate.stem == name_or_path:
                return [candidate]
        known += [entry.scenario.name for entry in entries if entry.scenario is not None]
    looks_like_path = path.suffix in SUFFIXES or "/" in name_or_path
    problem = "no such file" if looks_like_path else "no scenario of that name"
    close = [] if looks_like_path else difflib.get_close_matches(name_or_path, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ScenarioError(f"{name_or_path}: {problem}{hint}; `koosim scenarios` lists the library")
