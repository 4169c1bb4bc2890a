"""What every command shares: a usage error is one line and exit status 2; tracebacks are for bugs."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Something the user can fix: reported in one line, exit code 2."""
