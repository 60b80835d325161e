"""``python -m slidemap.cli``: the same as the ``slidemap`` command."""

import sys

from slidemap.cli import main

sys.exit(main())
