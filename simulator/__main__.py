"""``python -m simulator`` is ``koosim``."""

from simulator.cli import main

main(prog_name="koosim")
