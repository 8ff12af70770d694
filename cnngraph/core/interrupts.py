"""Ctrl-C in the command line's process (`cli`): noticed even where a library swallows
the KeyboardInterrupt or Python rewraps it.  Light to import: ``python -m cnngraph``
takes over Ctrl-C with it before the commands load."""
from __future__ import annotations

import signal
import sys


class CtrlC:
    """The command line process's Ctrl-C: a KeyboardInterrupt, as Python's own, and a
    mark that it came.  Raised where a library swallows it (in a ``__del__`` or a
    finaliser: "Exception ignored in ...") it is otherwise lost, and a run it meant to
    stop trains on; `StopFlag` honours the mark."""

    seen = False

    @classmethod
    def watch(cls) -> None:
        """Take over Python's handler (not a SIGINT the shell set to be ignored)."""
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, cls._handle)

    @classmethod
    def _handle(cls, signum, frame):
        cls.seen = True
        raise KeyboardInterrupt


def caused_by_ctrl_c(error: BaseException) -> bool:
    """Whether ``error`` is a KeyboardInterrupt or was raised because of one (Python 3.11
    wraps one raised in a class body's ``__set_name__`` in a RuntimeError)."""
    visited = set()
    while error is not None and id(error) not in visited:
        if isinstance(error, KeyboardInterrupt):
            return True
        visited.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def interrupted() -> int:
    """Say so in one line on stderr and give Ctrl-C's exit status, 130.  A
    KeyboardInterrupt that escaped an exec() of a string (dataclasses make their
    methods so) leaves CPython set to end the process by SIGINT at exit, whatever
    status is returned; an exec that completes clears that."""
    print("interrupted", file=sys.stderr)
    exec("")
    return 130
