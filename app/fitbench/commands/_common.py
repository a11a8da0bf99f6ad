"""Small helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def not_implemented(name: str) -> int:
    print(f"fitbench {name}: not implemented yet", file=sys.stderr)
    return EXIT_USAGE


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
