"""The interface contracts: one JSON Schema per call and direction, read from ``contracts/``.

A contract is named by three words: its *family* (``v1``, ``v2``, ``sync``, ``openapi``:
the folder), its *name* (the activity or call, e.g. ``newInstance``) and its *direction*
(``request`` or ``response``), i.e. the file ``contracts/<family>/<name>.<direction>.json``.

:func:`validate` checks a decoded JSON value against one contract and returns every
:class:`Violation` as a JSON path and a sentence, so a report can point at the exact member a
merchant got wrong. A missing member is reported at the path it should have had
(``$.instanceId``), not at its parent. Validators are compiled once per contract.

Two engines: a compiled one (jsonschema-rs) answers "does it conform?" in ~0.5 µs; jsonschema,
the reference, is asked only when the answer is no (or the compiled one cannot read the value),
to find and word every violation. A value conforms only where jsonschema says so.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, ValidationError

from simulator.resources import data_dir

DIRECTIONS = ("request", "response")
"""The two directions of every call: what the caller sends, what the callee answers."""

_MAX_VALUE = 60
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ContractKey = tuple[str, str, str]
"""``(family, name, direction)``, e.g. ``("v2", "newInstance", "response")``."""


class UnknownContract(KeyError):
    """No schema exists for the requested ``(family, name, direction)``."""

    def __str__(self) -> str:
        # KeyError would show the repr of its argument; the message is meant for people.
        return str(self.args[0])


@dataclass(frozen=True)
class Violation:
    """One way a value breaks its contract.

    ``path`` is a JSON path into the checked value (``$`` is the value itself,
    ``$.appInfo.password``, ``$.info[0].instanceId``); ``message`` says what is wrong.
    """

    path: str
    message: str


@cache
def _catalog() -> frozenset[ContractKey]:
    root = data_dir("contracts")
    found = set()
    for path in root.glob("*/*.json"):
        name, _, direction = path.name.removesuffix(".json").rpartition(".")
        if name and direction in DIRECTIONS:
            found.add((path.parent.name, name, direction))
    return frozenset(found)


def known_contracts() -> list[ContractKey]:
    """Every contract shipped with the package, sorted by family, name and direction."""
    return sorted(_catalog())


def _check_known(family: str, name: str, direction: str) -> None:
    if (family, name, direction) in _catalog():
        return
    if direction not in DIRECTIONS:
        raise UnknownContract(f"unknown direction {direction!r}: use one of {', '.join(DIRECTIONS)}")
    families = sorted({key[0] for key in _catalog()})
    if family not in families:
        raise UnknownContract(f"unknown contract family {family!r}: use one of {', '.join(families)}")
    names = sorted({key[1] for key in _catalog() if key[0] == family})
    raise UnknownContract(
        f"no contract {family}/{name}.{direction}: family {family!r} has {', '.join(names)}"
    )


@cache
def _load(family: str, name: str, direction: str) -> dict[str, Any]:
    path = data_dir("contracts") / family / f"{name}.{direction}.json"
    with path.open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


def schema_for(family: str, name: str, direction: str) -> dict[str, Any]:
    """The JSON Schema of one contract, as a fresh copy the caller may change.

    Raises :class:`UnknownContract` when the package has no such contract.
    """
    _check_known(family, name, direction)
    return copy.deepcopy(_load(family, name, direction))


@cache
def _validator(family: str, name: str, direction: str) -> Draft202012Validator:
    # No check_schema here: checking a contract against the metaschema takes 1.5 ms, 30 ms a
    # verify run, and the shipped contracts are checked once and for all by tests/test_contracts.py.
    return Draft202012Validator(_load(family, name, direction))


@cache
def _fast_validator(family: str, name: str, direction: str) -> jsonschema_rs.Draft202012Validator:
    # formats are annotations in 2020-12, as for the reference validator (no format checker)
    return jsonschema_rs.Draft202012Validator(_load(family, name, direction), validate_formats=False)


def _conforms(instance: Any, family: str, name: str, direction: str) -> bool:
    """True only when ``instance`` surely conforms: jsonschema took ~70 µs to say so of a
    newInstance answer, the compiled validator takes ~0.5 µs. Anything it rejects or cannot
    read (a lone surrogate, an integer past 64 bits) goes to jsonschema, which decides."""
    try:
        return bool(_fast_validator(family, name, direction).is_valid(instance))
    except (ValueError, TypeError, OverflowError):
        return False


def _json_path(parts: Iterable[str | int]) -> str:
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.match(part):
            path += f".{part}"
        else:
            path += f"[{json.dumps(part, ensure_ascii=False)}]"
    return path


def _message(error: ValidationError) -> str:
    # jsonschema's messages open with the offending value; a list of 100 IDs would swamp a report.
    value = repr(error.instance)
    if len(value) > _MAX_VALUE and error.message.startswith(value):
        return value[:_MAX_VALUE] + "…" + error.message[len(value) :]
    return error.message


def _violations(error: ValidationError) -> list[Violation]:
    parts = list(error.absolute_path)
    required = error.validator_value if error.validator == "required" else None
    if isinstance(required, list) and isinstance(error.instance, dict):
        # A ``then`` block's description says when its members become required ("on success").
        conditional = list(error.relative_schema_path)[-2:] == ["then", "required"]
        why = error.schema.get("description") if conditional and isinstance(error.schema, dict) else None
        suffix = f" ({why})" if why else ""
        return [
            Violation(_json_path([*parts, member]), f"required member {member!r} is missing{suffix}")
            for member in required
            if member not in error.instance
        ]
    return [Violation(_json_path(parts), _message(error))]


def validate(instance: Any, family: str, name: str, direction: str) -> list[Violation]:
    """Check a decoded JSON value against one contract; an empty list means it conforms.

    Violations come sorted by path, each reported once. Raises :class:`UnknownContract`
    when the package has no such contract.
    """
    _check_known(family, name, direction)
    if _conforms(instance, family, name, direction):
        return []
    found: dict[Violation, None] = {}
    for error in _validator(family, name, direction).iter_errors(instance):
        found.update(dict.fromkeys(_violations(error)))
    return sorted(found, key=lambda violation: (violation.path, violation.message))


@cache
def allowed_result_codes(family: str, name: str) -> frozenset[str]:
    """The resultCodes the answer contract of ``family``/``name`` lets a merchant give."""
    _check_known(family, name, "response")
    code = _load(family, name, "response").get("properties", {}).get("resultCode", {})
    return frozenset(code.get("enum", ()))
