"""Small helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fitbench.core.hardware.detect import read_json

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def not_implemented(name: str) -> int:
    print(f"fitbench {name}: not implemented yet", file=sys.stderr)
    return EXIT_USAGE


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def load_hardware_json(path: Path) -> dict[str, Any]:
    """The JSON object `fitbench detect --json` wrote; a clear ValueError naming the file."""
    return read_json(path)
