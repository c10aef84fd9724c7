"""`python -m asc_utils.cli`: the same as the `asc` command."""

import sys

from asc_utils.cli import main

sys.exit(main())
