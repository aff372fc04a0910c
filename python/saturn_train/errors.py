"""Errors that name the fix, and the exit statuses the agent understands."""

from __future__ import annotations

EXIT_OOM = 3
"""Out of memory: the agent records the trial/configuration as infeasible."""
EXIT_RENDEZVOUS_TIMEOUT = 4
"""The gang did not rendezvous within `SATURN_RENDEZVOUS_TIMEOUT_S`."""
EXIT_USAGE = 2
"""The task or environment is wrong; the message says how to fix it."""


class TaskError(ValueError):
    """The task cannot run as described; the message names the fix."""


class RendezvousTimeout(RuntimeError):
    """The gang's processes did not all arrive in time."""
