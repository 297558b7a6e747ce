"""Turn the third-party corpora in ../shared/data into story records for tests (never copied)."""

from __future__ import annotations

import json
from pathlib import Path


def bbc_records(shared_data: Path, categories=("politics", "entertainment"), limit: int | None = None) -> list[dict]:
    """BBC News articles as JSON Lines story records (DESIGN.md 4.4), one per file.

    The corpus has no URLs or dates: URLs are made from the file name; dates are left out.
    """
    out = []
    for cat in categories:
        files = sorted((shared_data / "bbc-news" / cat).glob("*.txt"))[:limit]
        for f in files:
            raw = f.read_bytes().decode("utf-8", errors="replace")
            title, _, body = raw.partition("\n")
            body = body.strip()
            paras = [p.strip() for p in body.split("\n") if p.strip()]
            out.append({
                "url": f"https://www.bbc.co.uk/news/{cat}-{f.stem}",
                "title": title.strip(),
                "summary": paras[0] if paras else "",
                "text": "\n\n".join(paras),
                "site": "bbc.co.uk",
                "source": f"bbc-{cat}",
                "category": cat,
            })
    return out


def write_jsonl(records: list[dict], path: Path) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    # `python -m tests.datasets bbc` prints the BBC politics and entertainment stories as JSON
    # Lines for `tidings import -` (used by `make demo`; the data stays in ../shared/data).
    import sys

    root = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if len(sys.argv) < 2 or sys.argv[1] != "bbc" or not root.is_dir():
        sys.exit(f"usage: python -m tests.datasets bbc   (needs {root})")
    for rec in bbc_records(root):
        print(json.dumps(rec, ensure_ascii=False))
