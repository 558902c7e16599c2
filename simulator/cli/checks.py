"""``koosim checks``: the check catalog."""

from __future__ import annotations

import click


@click.command(name="checks")
def list_checks() -> None:
    """List the check catalog: id, severity, the rule it enforces, what it checks."""
    from rich.console import Console

    from simulator.checks import catalog
    from simulator.report.console import print_catalog

    print_catalog(Console(), catalog())
