"""`python -m capps_stack` (with deploy/local on the path) is `deploy/local/stack.py`."""

import sys

from .cli import main

sys.exit(main())
