"""SIGTERM stops a search the way Ctrl-C does: journal closed, the resume command printed.

`kill PID`, `timeout`, a batch scheduler and `ray job stop` (SIGTERM first, SIGKILL a few seconds
later) all ask a process to stop with SIGTERM. Python's default for it is to die at once, and
`ray.init` replaces that with ``sys.exit``, which the CLI does not report as an interruption.
While a search runs, `sigterm_as_interrupt` turns SIGTERM into `Terminated`, a
`KeyboardInterrupt`, so both signals take the same path: the in-flight jobs are cancelled, the
journal (already durable record by record) is closed, and ``optforge search`` prints how to go on
with ``--resume`` and exits 143 (128 + SIGTERM). Nothing depends on it for correctness: a
``kill -9`` loses nothing either (tests/search/test_cli_search.py).

SIGINT is left as the process received it. A command started in the background from a script
(``optforge search ... &`` without job control) inherits SIGINT *ignored* from the shell, and
Python then keeps ignoring it, so ``kill -INT`` does nothing there; ``kill`` (SIGTERM) works in
every case.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM while a search ran."""

    exit_code = 128 + signal.SIGTERM


def _raise_terminated(signum, frame):  # noqa: ARG001 -- the signal module's handler signature
    raise Terminated("SIGTERM")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` in the main thread; the previous handler
    (Python's default, or Ray's) is restored after it. A no-op outside the main thread, where
    Python cannot set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
