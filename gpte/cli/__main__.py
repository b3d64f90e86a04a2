"""``python -m gpte.cli``: the ``gpte`` command (as ``python -m gpte``)."""

import sys

from gpte.cli import main

if __name__ == "__main__":
    sys.exit(main())
