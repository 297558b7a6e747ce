"""Story files (JSON Lines, DESIGN.md 4.4) out: one object a line, the fields `tidings import`
reads, so an export imports into another Tidings (a move, a backup, a second site) as the
same stories.

Pure: a Story in, a line out. Empty fields are left out, as a person writing the file would.
`published_at` is the story's own time, else when it was collected: Tidings dates an undated
story by its collection everywhere (sorting, freshness, retention), and a file without a time
would date it at the import instead.
"""

from __future__ import annotations

import json
from datetime import UTC

from aggregator.importer import FIELDS
from aggregator.model import Story


def story_record(story: Story) -> dict[str, str | list[str]]:
    at = story.when.astimezone(UTC).isoformat().replace("+00:00", "Z")
    values = {"url": story.url, "title": story.title, "summary": story.summary,
              "text": story.text, "published_at": at, "site": story.site,
              "source": story.source, "category": story.category, "author": story.author,
              "image_url": story.image_url, "tags": list(story.tags)}
    return {key: values[key] for key in FIELDS if values[key]}


def story_line(story: Story) -> str:
    """One line of a story file, newline included (UTF-8 text, not \\u escapes)."""
    return json.dumps(story_record(story), ensure_ascii=False) + "\n"
