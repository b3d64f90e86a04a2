"""``python -m gpte``: the ``gpte`` command."""

import sys

from gpte.cli import main

if __name__ == "__main__":
    sys.exit(main())
