"""Optional packages: one error that names the exact install line.

tfrf is installed from its clone (`pip install -e .`), so the extra is installed the same way:
`pip install -e ".[mediapipe]"` in the clone. The command line reports a `MissingDependency` in
one line (exit status 2), like a user's other mistakes.
"""
from __future__ import annotations


class MissingDependency(ImportError):
    """An optional package that a feature needs is not installed."""


def missing(feature: str, extra: str, alternative: str = "") -> MissingDependency:
    """The error for `feature` without the packages of the extra `extra` (setup.py's
    extras_require), with what a user can do instead."""
    instead = f", or {alternative}" if alternative else ""
    return MissingDependency(f"{feature} needs the optional packages of tfrf's [{extra}] extra: run "
                             f"pip install -e \".[{extra}]\" in the tfrf clone{instead}")
