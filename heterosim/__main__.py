"""``python -m heterosim ...``: the ``heterosim`` command (see :mod:`heterosim.cli`)."""
import sys

from heterosim.cli import main

if __name__ == "__main__":
    sys.exit(main())
