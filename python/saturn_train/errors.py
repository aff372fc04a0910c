"""Errors that name the fix, and the exit statuses the agent understands."""

from __future__ import annotations

EXIT_INFEASIBLE = 3
"""This technique cannot run at this GPU count (out of memory, too few blocks, one-GPU-only
technique on several): the agent records the configuration as infeasible and plans
around it."""
EXIT_OOM = EXIT_INFEASIBLE
"""Out of memory is one kind of infeasible."""
EXIT_RENDEZVOUS_TIMEOUT = 4
"""The gang did not rendezvous within `SATURN_RENDEZVOUS_TIMEOUT_S`."""
EXIT_USAGE = 2
"""The task or environment is wrong; the message says how to fix it."""


class TaskError(ValueError):
    """The task cannot run as described; the message names the fix."""


class Infeasible(TaskError):
    """The task is fine but this technique cannot run it at this GPU count (exit 3): the
    planner should choose another configuration, the user need not change anything."""


class RendezvousTimeout(RuntimeError):
    """The gang's processes did not all arrive in time."""
