"""``python -m cnngraph``: the command line (`cli.main`); Ctrl-C while it is still
being imported exits 130 with one line, as it does later."""
import sys

try:
    from .cli.main import main
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
