"""Print a pip constraints file pinning every dependency in pyproject.toml to its lower bound.

pip has no `--resolution=lowest-direct` (uv has); pinning each `name>=X` to the lowest release
that is >= X gives the same for direct dependencies. A bound names a release prefix ("0.30",
"12.535"); when no release is exactly X, `pip index versions` (one look-up per dependency)
gives the lowest release at or above it. Transitive dependencies are left to the resolver.
Usage: python .ci/lowest_constraints.py [pyproject.toml] [extra ...]
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

_REQ = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?P<spec>[^;#]*)")


def _key(version: str) -> tuple[int, ...]:
    # final releases only (pre-releases never satisfy a plain >=); enough for these projects
    return tuple(int(x) for x in version.split("."))


def lowest_release(name: str, bound: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    m = re.search(r"Available versions: (.*)", out)
    if m is None:
        raise SystemExit(f"{name}: pip index versions listed nothing")
    versions = [v.strip() for v in m[1].split(",") if re.fullmatch(r"\d+(\.\d+)*", v.strip())]
    candidates = [v for v in versions if _key(v) >= _key(bound)]
    if not candidates:
        raise SystemExit(f"{name}: no release >= {bound}")
    return min(candidates, key=_key)


def lowest_pins(requirements: list[str]) -> list[str]:
    pins = []
    for req in requirements:
        m = _REQ.match(req)
        if m is None:
            raise SystemExit(f"cannot parse requirement {req!r}")
        lower = [s.strip()[2:].strip() for s in m["spec"].split(",") if s.strip().startswith(">=")]
        if not lower:
            raise SystemExit(f"{m['name']}: no lower bound (>=) declared: declare one")
        pins.append(f"{m['name']}=={lowest_release(m['name'], lower[0])}")
    return pins


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path("pyproject.toml")
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in argv[2:]:
        reqs += project["optional-dependencies"][extra]
    print("\n".join(lowest_pins(reqs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
