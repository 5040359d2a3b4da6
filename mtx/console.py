"""What a command shows while it runs: the log (the `logging` module's "mtx" logger: library modules log, the CLI
shows it as bare lines on stderr), the training status line, progress bars, and the stop flag that Ctrl-C and
SIGTERM set. On a terminal the status line and the bars draw in place (rich); elsewhere (a log file, CI) they stay
quiet, except the training status, printed as a line every `every`-th update."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def is_tty() -> bool:
    return sys.stderr.isatty()


class _Stderr(logging.StreamHandler):
    """A handler that writes to whatever `sys.stderr` is at the time (a test runner swaps it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def log_to_stderr(level: int = logging.INFO) -> None:
    """Show mtx's log (INFO and above) as bare lines on stderr; idempotent."""
    logger = logging.getLogger("mtx")
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers = [handler]
    logger.setLevel(level)


class StatusLine:
    """The training status (step, epoch, loss, lr, tokens/s, time left) on stderr."""

    def __init__(self, every: int = 10, enabled: bool = True):
        self.tty = enabled and is_tty()
        self.every, self.calls = (every if enabled else 0), 0
        self.console = Console(stderr=True, highlight=False) if self.tty else None
        self.status = None

    def show(self, text: str) -> None:
        self.calls += 1
        if self.console is not None:
            if self.status is None:
                self.status = self.console.status(text, spinner="dots")
                self.status.start()
            self.status.update(text)
        elif self.every and self.calls % self.every == 0:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Clear the line, so that what is printed next starts on its own line."""
        if self.status is not None:
            self.status.stop()
            self.status = None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """mtx's log shows warnings and errors only, within the block."""
    logger = logging.getLogger("mtx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def spinner(text: str, enabled: bool = True) -> Iterator[None]:
    """A spinner with `text` on stderr while the block runs (a terminal only): for steps without a count."""
    if not (enabled and is_tty()):
        yield
        return
    with Console(stderr=True).status(text, spinner="dots"):
        yield


class ProgressBar:
    """A progress bar on stderr when it is a terminal and the work is long (`total` >= `min_total`); otherwise
    nothing. `advance(n)` as work gets done; use it as a context manager."""

    def __init__(self, total: int | None, description: str, min_total: int = 200):
        self.bar = None
        if is_tty() and (total is None or total >= min_total):
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
            self.bar = Progress(*columns, console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task(description, total=total)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def __enter__(self) -> ProgressBar:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


class StopFlag:
    """SIGINT/SIGTERM set a flag that the loop reads between steps, so no step is cut in half; a second Ctrl-C
    stops at once. The handlers are installed on entering the block (main thread only)."""

    def __init__(self):
        self.set = False
        self.saved: dict = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
