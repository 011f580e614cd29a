"""``python -m copylens.app``: the window (``gui``) or ``demo``."""

import sys

from .cli import main

sys.exit(main())
