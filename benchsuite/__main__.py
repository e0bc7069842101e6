"""``python -m benchsuite``: the command line, also as ``accelerate launch -m benchsuite run ...``."""

import sys

from .cli import main

sys.exit(main())
