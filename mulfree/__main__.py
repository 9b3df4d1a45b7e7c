"""``python -m mulfree``: the same command line as the ``mulfree`` script."""

import sys

from mulfree.cli import main

sys.exit(main())
