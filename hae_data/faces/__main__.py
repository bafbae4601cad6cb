"""``python -m hae_data.faces``: see :mod:`hae_data.faces.cli`."""

import sys

from hae_data.faces.cli import main

sys.exit(main())
