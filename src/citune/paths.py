"""Where citune keeps its caches (converted weights, embeddings, tags)."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_root(override: str | None = None) -> Path:
    root = override or os.environ.get("CITUNE_CACHE") or platformdirs.user_cache_dir("citune")
    p = Path(root).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    return p
