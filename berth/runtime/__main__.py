"""``python3 -m berth.runtime``: see :mod:`berth.runtime.cli`."""

import sys

from berth.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
