"""``python -m cnngraph`` and the ``cnngraph`` script: the command line (`cli.main`).
Ctrl-C exits 130 with one line from the first of its lines on: while the heavy
modules are imported, and where a library swallowed it (`core.interrupts.CtrlC`)."""
import sys


def entry() -> int:
    from .core.interrupts import CtrlC, caused_by_ctrl_c, interrupted
    CtrlC.watch()
    try:
        from .cli.main import main
    except BaseException as e:
        if not caused_by_ctrl_c(e):
            raise
        return interrupted()
    return main()


if __name__ == "__main__":
    sys.exit(entry())
