"""Where videos come from: metadata tables (DISCO-10M, LAION-DISCO-12M, path lists) read as a stream.

Shared by ingest (which registers rows) and download (which fetches them).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{6,}$")


def youtube_id(url: str) -> str | None:
    parsed = urlparse(url)
    if parsed.hostname and parsed.hostname.endswith("youtu.be"):
        candidate = parsed.path.lstrip("/")
    else:
        candidate = (parse_qs(parsed.query).get("v") or [parsed.path.rstrip("/").rsplit("/", 1)[-1]])[0]
    return candidate if candidate and _YOUTUBE_ID.match(candidate) else None
