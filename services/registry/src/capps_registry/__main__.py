"""`python -m capps_registry` runs the `registry` command."""

import sys

from capps_registry.cli import main

sys.exit(main())
