"""Reporters: they render a finished :class:`~simulator.suite.Run` and never run checks."""
