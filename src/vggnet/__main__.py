"""``python -m vggnet`` (and ``torchrun -m vggnet train ...``)."""

import sys

from .cli import main

sys.exit(main())
