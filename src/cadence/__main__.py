"""``python -m cadence``: the ``cadence`` command (as ``torchrun -m cadence`` runs it)."""

import sys

from cadence.cli import main

sys.exit(main())
