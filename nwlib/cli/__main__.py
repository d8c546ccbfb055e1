"""``python -m nwlib.cli``: the same as ``nw``."""
import sys

from . import main

sys.exit(main())
