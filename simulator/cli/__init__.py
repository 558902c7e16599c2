"""``koosim``: the command line.

This module is the group and the registration of the command families, one module each
(:mod:`~simulator.cli.verify`, :mod:`~simulator.cli.checks`, :mod:`~simulator.cli.scenarios`,
:mod:`~simulator.cli.server`, :mod:`~simulator.cli.merchant`, :mod:`~simulator.cli.load`,
:mod:`~simulator.cli.watch`). They
share :mod:`simulator.cli.common` (options, exit codes, the one error mapping, ``with_target``)
and never import this module back.

Exit codes, for every command that talks to a merchant: 0 all selected checks passed, 1 at least
one failed (or the whole-run time budget left some unrun), 2 a usage or configuration error,
3 the target could not be reached at all (or the preflight found a wrong key, a wrong path or a
web page), 130/143 interrupted by Ctrl-C/SIGTERM (what ran is reported and recorded).
``watch`` adds 4 (``--strict``: a dial test failed) and 5 (the published delisting threshold is
reached: docs/watch.md).
"""

from __future__ import annotations

import click

from simulator import __version__
from simulator.cli.checks import list_checks
from simulator.cli.common import OUTPUT
from simulator.cli.load import load
from simulator.cli.merchant import merchant
from simulator.cli.scenarios import explore, play, scenarios
from simulator.cli.server import runs, serve, show
from simulator.cli.verify import verify
from simulator.cli.watch import watch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="koosim")
@click.option(
    "--no-color",
    is_flag=True,
    help="No colour, even on a terminal (so does the NO_COLOR environment variable). Off a "
    "terminal output is always plain and never wrapped.",
)
def main(no_color: bool) -> None:
    """A fake Huawei Cloud KooGallery marketplace that contract-tests your merchant server.

    With no --url every command targets the bundled reference merchant, started on a free port.
    Keys come from KOOSIM_ACCESS_KEY / KOOSIM_SYNC_KEY or koosim.toml, never from the command line.
    """
    OUTPUT["color"] = not no_color


for command in (verify, watch, list_checks, merchant, load, scenarios, play, explore, serve, runs, show):
    main.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    main()
