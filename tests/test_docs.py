"""The documentation's runnable shell blocks are run, so they cannot rot.

Convention (also in CONTRIBUTING.md): a fenced ```sh or ```console block in README.md or
docs/*.md is *runnable* when the line right before its opening fence is exactly

    <!-- runnable -->

Mark a block runnable when it works offline, as it is, in an empty directory, against the
bundled reference merchant (or a server it starts itself on a free port and stops): no real
merchant, no download, no docker, no fixed port. Such a block is run here with ``bash -e`` in
a temporary directory, with this environment's ``koosim`` first on PATH and every KOOSIM_*
variable of the developer's environment removed (the block sets what it needs), bounded in
time; it passes when bash exits 0. A ```sh block runs as written; of a ```console block only
the commands run: the lines starting with ``$ `` (the rest is shown output). Whatever a block
leaves running in the background is killed with its process group when it ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from shell import clean_env, run_bash

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- runnable -->"
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    body: str
    runnable: bool

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def script(self) -> str:
        if self.language == "console":
            return "\n".join(line[2:] for line in self.body.splitlines() if line.startswith("$ ")) + "\n"
        return self.body


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with its language and whether it is marked."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence, language = opening.groups()
        end = next(
            (i for i in range(index + 1, len(lines)) if lines[i].strip().startswith(fence[0] * len(fence))),
            None,
        )
        assert end is not None, f"{path.name}:{index + 1}: a fence that is never closed"
        marked = index > 0 and lines[index - 1].strip() == MARKER
        body = "\n".join(lines[index + 1 : end]) + "\n"
        found.append(Block(path, index + 1, language, body, marked))
        index = end + 1
    return found


ALL_BLOCKS = [block for path in documents() for block in blocks(path)]
RUNNABLE = [block for block in ALL_BLOCKS if block.runnable]


def test_every_marker_stands_before_a_sh_or_console_block() -> None:
    for path in documents():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if line.strip() == MARKER:
                following = FENCE.match(lines[number + 1]) if number + 1 < len(lines) else None
                assert following, f"{path.name}:{number + 1}: {MARKER} not right before a fence"
                assert following.group(2) in {"sh", "console"}, f"{path.name}:{number + 1}"


def test_the_docs_have_runnable_blocks() -> None:
    assert len(RUNNABLE) >= 5
    assert {block.path.name for block in RUNNABLE} >= {"README.md", "server.md", "scenarios.md"}
    for block in RUNNABLE:
        assert block.script().strip(), f"{block.id}: a runnable block with no command"


def test_no_document_installs_koosim_from_an_index_it_is_not_on() -> None:
    # By name, optionally with extras, and not "name[extras] @ URL" (a direct reference).
    from_an_index = re.compile(
        r"(pip|pipx|uv tool|uv pip) install [^\n`]*?(?<![\w/.@-])koogallery-simulator(?![^\s\"']*\s*@)"
    )
    for path in [*documents(), *sorted((ROOT / "ci-templates").glob("*"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not from_an_index.search(line), f"{path.name}:{number}: {line.strip()}"


@pytest.mark.timeout(TIMEOUT_S + 30)
@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.id)
def test_runnable_block(block: Block, tmp_path: Path) -> None:
    finished = run_bash(block.script(), cwd=tmp_path, env=clean_env(), timeout=TIMEOUT_S)
    assert finished.returncode == 0, f"{block.id}\n{block.script()}\n{finished}"
    assert "Traceback" not in finished.output, f"{block.id}\n{finished}"


def test_every_koosim_option_the_docs_show_exists() -> None:
    """Blocks that cannot run here still must not name a command or option koosim lacks."""
    from simulator.cli import main

    invocation = re.compile(r"(?:^|[\s;&|(`$])koosim ([a-z]+)((?: +[^\s;&|#`)]+)*)")
    for block in ALL_BLOCKS:
        if block.language not in {"sh", "console"}:
            continue
        for line in block.script().splitlines():
            line = re.sub(r"(^|\s)#.*", "", line)  # a shell comment
            for command, arguments in invocation.findall(line):
                where = f"{block.id}: koosim {command}{arguments}"
                assert command in main.commands, where
                known = {
                    option
                    for parameter in main.commands[command].params
                    for option in [*parameter.opts, *parameter.secondary_opts]
                } | {"--help", "-h"}
                for argument in arguments.split():
                    if argument.startswith("-"):
                        assert argument.split("=")[0] in known, where
