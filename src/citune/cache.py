"""The one keyed on-disk cache (embeddings, instruction tags, key parts, instruction variants).

A store is a directory of batch files; each write adds one batch file (atomically), each
entry is keyed by the sha256 of its content parts. Batch names are derived from their keys,
so several ranks writing the same batch write the same file. A process keeps what it has
read in memory and re-scans the directory only on a miss, and only when the directory changed since
its last scan (its mtime), so that a run of misses costs one `stat` each, not a listing.
"""
from __future__ import annotations

import hashlib
import io
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from citune.io import atomic_write_bytes, atomic_write_text


@lru_cache(maxsize=None)
def code_digest(*sources: Any) -> str:
    """A digest of the source code of modules or functions, for the key of a cached result that code
    produced: a change of the code (a heuristic, a tagger) then misses the old entries, no version string
    to remember to bump."""
    import inspect

    h = hashlib.sha256()
    for source in sources:
        h.update(inspect.getsource(source).encode("utf-8"))
    return h.hexdigest()[:16]


def content_key(*parts: str) -> str:
    """sha256 of the parts, joined by a unit separator (so ("ab", "c") != ("a", "bc"))."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


class KeyedStore:
    """A key → value cache in `root`; values are float32 vectors (`kind="npz"`) or JSON (`"json"`)."""

    def __init__(self, root: Path, kind: str):
        if kind not in ("npz", "json"):
            raise ValueError(f"unknown store kind {kind!r}")
        self.root, self.kind = Path(root), kind
        self.entries: dict[str, Any] = {}
        self._seen: set[str] = set()
        self._scanned: int | None = None  # the directory's mtime_ns at the last scan

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        if any(k not in self.entries for k in keys):
            self._refresh()
        return {k: self.entries[k] for k in keys if k in self.entries}

    def put_many(self, items: Mapping[str, Any]) -> None:
        if not items:
            return
        fresh = self._scanned is not None and self._mtime() == self._scanned
        keys = sorted(items)
        path = self.root / f"{content_key(*keys)[:32]}.{self.kind}"
        if self.kind == "npz":
            buf = io.BytesIO()
            np.savez(buf, keys=np.array(keys), values=np.stack([np.asarray(items[k], np.float32) for k in keys]))
            atomic_write_bytes(path, buf.getvalue())
        else:
            atomic_write_text(path, json.dumps({k: items[k] for k in keys}, ensure_ascii=False))
        self.entries.update(items)
        self._seen.add(path.name)
        if fresh:  # only this write changed the directory (or another writer's batch is recomputed once)
            self._scanned = self._mtime()

    def _mtime(self) -> int | None:
        try:
            return self.root.stat().st_mtime_ns
        except OSError:
            return None

    def _refresh(self) -> None:
        mtime = self._mtime()
        if mtime is None or mtime == self._scanned:
            return
        self._scanned = mtime
        for path in sorted(self.root.glob(f"*.{self.kind}")):
            if path.name in self._seen:
                continue
            try:
                self.entries.update(self._read(path))
            except (OSError, ValueError, KeyError):
                continue  # an unreadable batch is ignored; its entries are recomputed and rewritten
            self._seen.add(path.name)

    def _read(self, path: Path) -> dict[str, Any]:
        if self.kind == "json":
            return json.loads(path.read_text(encoding="utf-8"))
        with np.load(path, allow_pickle=False) as z:
            return dict(zip(z["keys"].tolist(), z["values"]))


@lru_cache(maxsize=None)
def store(root: Path, kind: str) -> KeyedStore:
    """One in-memory view per directory and process."""
    return KeyedStore(root, kind)
