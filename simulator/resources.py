"""Where the data folders (``contracts/``, ``scenarios/``) are, installed or in a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder ``name`` shipped with the package.

    A wheel carries the repository's top-level data folders under ``simulator/_data/``; a
    source checkout or an editable install finds them beside the package instead.
    """
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the data folder {name!r} is missing from this installation")
