"""python -m tritonshm: the tritonshm command."""

import sys

from .cli import main

sys.exit(main())
