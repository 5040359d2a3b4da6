"""Errors a user can cause and fix: the CLI prints them in one line, without a traceback."""


class MtxError(Exception):
    """A data or model problem (exit code 1)."""

    exit_code = 1


class UsageError(MtxError):
    """An invalid option or config value (exit code 2)."""

    exit_code = 2
