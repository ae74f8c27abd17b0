"""``python -m voisnap``: the same as the ``voisnap`` command."""

import sys

from .cli import main

sys.exit(main())
