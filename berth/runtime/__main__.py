"""``python3 -m berth.runtime``: see :mod:`berth.runtime.cli`."""

import sys

from berth.runtime.cli import main

sys.exit(main())
