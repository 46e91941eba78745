"""The local stack's entry point: `python deploy/local/stack.py up|down|status [PART...]`.

The stack itself is the standard-library package beside this file (capps_stack/); see its
docstring for parts, state and environment. This file only puts it on the path, so the stack
runs with any Python 3.11+ before the venv exists.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Other tooling (a test's throwaway broker) loads this file for these names.
from capps_stack.cli import main
from capps_stack.config import Ports, StackError
from capps_stack.kafka import kafka_server_properties, new_kafka_cluster_id

__all__ = ["Ports", "StackError", "kafka_server_properties", "main", "new_kafka_cluster_id"]

if __name__ == "__main__":
    sys.exit(main())
