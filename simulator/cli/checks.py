"""``koosim checks``: the check catalog."""

from __future__ import annotations

import json

import click

from simulator.cli.common import make_console


@click.command(name="checks")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as a JSON list instead.")
def list_checks(as_json: bool) -> None:
    """List the check catalog: id, severity, the rule it enforces, what it checks."""
    from simulator.checks import catalog
    from simulator.report.console import print_catalog

    if as_json:
        listed = [
            {
                "id": check.id,
                "severity": check.severity.value,
                "rule": check.rule,
                "title": check.title,
                "protocols": sorted(check.protocols),
            }
            for check in catalog()
        ]
        click.echo(json.dumps(listed, ensure_ascii=False, indent=2))
        return
    print_catalog(make_console(), catalog())
