"""Import-direction check (part of `make lint`): api -> recommender -> aggregator, never back,
and aggregator imports no ML library. Reads the source with ast; imports nothing.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "aggregator": {"recommender", "api", "torch", "sentence_transformers", "faiss", "transformers",
                   "sklearn", "numpy"},
    "recommender": {"api"},
}


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def main() -> int:
    bad = []
    for pkg, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for name in sorted(imported(path) & forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    for line in bad:
        print(f"import direction: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
