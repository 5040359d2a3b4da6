"""Errors a user can cause and fix: the CLI prints them in one line, without a traceback."""


class MtxError(Exception):
    """A data or model problem (exit code 1)."""

    exit_code = 1


class UsageError(MtxError):
    """An invalid option or config value (exit code 2)."""

    exit_code = 2


def check_positive(zero_ok: bool = False, **options: float | None) -> None:
    """Each command-line option given (named with underscores) must be > 0 (>= 0 with `zero_ok`)."""
    for name, value in options.items():
        if value is not None and (value < 0 or (value == 0 and not zero_ok)):
            raise UsageError(f"--{name.replace('_', '-')} must be {'>= 0' if zero_ok else '> 0'}, got {value}")
