"""Reporters: they render a finished :class:`~simulator.engine.run.Run` and never run checks."""
