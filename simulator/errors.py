"""The errors a user can cause, one family with one base: :class:`KoosimError`.

Each kind carries the exit code a command ends with and the words that introduce its message;
:func:`simulator.cli.common.fail_with` is the one place that turns them into ``koosim: …`` on
stderr and that exit code (the pytest plugin prints the same line). A check's verdict is not an
error: a failed check is exit code 1, decided by the run, not raised.

Exit codes: 2 a usage or configuration error (a malformed setting, scenario file or run
history), 3 the target could not be reached at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class KoosimError(Exception):
    """Something the user can fix; ``str()`` says what, :meth:`one_line` adds the context."""

    exit_code = EXIT_USAGE
    context = ""
    """Words before the message (``"the target could not be reached"``), or none."""

    def one_line(self) -> str:
        """The message a command ends with, after ``koosim:``."""
        return f"{self.context}: {self}" if self.context else str(self)


class UsageError(KoosimError):
    """A usage or configuration error: exit code 2."""


class ConfigError(UsageError):
    """A setting is missing or malformed; the message names where it came from."""


class StoreError(UsageError):
    """The run history cannot be opened or written: a path, a permission, a foreign file."""

    context = "cannot keep the run history"


class TargetUnreachable(KoosimError):
    """Nothing accepts connections at the target's address: exit code 3."""

    exit_code = EXIT_UNREACHABLE
    context = "the target could not be reached"


class BudgetSpent(BaseException):
    """The whole run's time budget (``--max-time``) is spent: send nothing more.

    A BaseException, like KeyboardInterrupt, so that neither a check's ``except Exception`` nor
    Hypothesis (which shrinks any Exception as a failure) mistakes it for the merchant's fault;
    the run catches it and reports the checks it did not run as skipped.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(budget_reason(seconds))
        self.seconds = seconds


def budget_reason(seconds: float) -> str:
    return f"whole-run time budget of {seconds:g} s spent"


@dataclass(frozen=True)
class TimeBudget:
    """``seconds`` from the moment it is made, for the whole run: every call checks it first."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    @property
    def spent(self) -> bool:
        return time.monotonic() - self.started >= self.seconds

    def check(self) -> None:
        """Raise :class:`BudgetSpent` once the budget is spent."""
        if self.spent:
            raise BudgetSpent(self.seconds)


class TargetMisconfigured(KoosimError):
    """The preflight call's answer names an obvious cause (wrong key, wrong path, a web page):
    exit code 3, as for an unreachable target, without running the catalog."""

    exit_code = EXIT_UNREACHABLE
    context = "preflight"
