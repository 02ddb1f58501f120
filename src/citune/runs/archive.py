"""One compact file per run: a run directory's small files packed into `<run>.run.json.gz`.

Stored benchmark results keep what a researcher reads (config.yaml, manifest.json, metrics.json,
inscl_distances.json, every stage's eval.json with the per-instance predictions, replay.jsonl with
the replay composition, train_log.jsonl, any other small text file of the run) and leave out what
is regenerated or too big to store:

- `plots/` and `report.md` / `report.html` (rebuilt by `citune report` from the rest);
- model weights and checkpoints: `checkpoints/`, `checkpoint*/`, `model/`, `adapter*` (files and
  folders), `*.safetensors`, `*.bin`, `*.pt`, `*.pth`, `*.ckpt`, `*.gguf`, `*.npy`, `*.npz`, `*.pkl`;
- hidden files and folders (`.name`: the temporary files of an interrupted atomic write), symbolic
  links, `__pycache__/`;
- any other file over `MAX_OTHER_BYTES` (4 MB) that is not `.json` / `.jsonl`, and any file that is
  not UTF-8 text.

The archive is gzip-compressed JSON (gzip with mtime 0, compression level 9; no file name in the
header):

    {"format": "citune-run-archive", "version": 1, "run": "<run directory name>",
     "files": {"<relative path>": ENTRY, ...},      # in sorted path order
     "skipped": ["plots/", "report.md", ...]}       # what was left out, folders with a trailing "/"

where ENTRY is `{"json": <parsed value>, "style": "indent2"}` for a JSON file, `{"jsonl": [<records>],
"style": "lines"}` for a JSONL file, and `{"text": "<the file's text>"}` for anything else. A parsed
entry is kept only when writing it back in its style gives the original bytes exactly (citune writes
its JSON and JSONL files that way); any file that would not come back byte-identical is stored as
text. So `unpack_run` restores every packed file byte for byte, and `zcat RUN.run.json.gz | jq
'.files["metrics.json"].json.ap'` reads a number without unpacking. The archive's JSON keeps each
file's key order (no key sorting: that would change the files) and is built in sorted path order,
so packing the same run twice gives the same bytes.

`open_run(path)` yields a run directory for an archive (a temporary restoration, removed afterwards)
or the directory itself, so that the readers of run directories work on archives unchanged.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator

from citune.errors import InputError
from citune.io import atomic_write_bytes

FORMAT = "citune-run-archive"
VERSION = 1
SUFFIX = ".run.json.gz"
MAX_OTHER_BYTES = 4 * 1024 * 1024

SKIP_DIRS = {"plots", "checkpoints", "model", "__pycache__"}
SKIP_DIR_PREFIXES = ("checkpoint", "adapter")
SKIP_FILES = {"report.md", "report.html"}
SKIP_FILE_PREFIXES = ("adapter",)
SKIP_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".npy", ".npz", ".pkl")

# How citune.io writes JSON / JSONL (write_json, write_jsonl), and the ASCII-escaped variant.
_JSON_STYLES = {
    "indent2": lambda v: json.dumps(v, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
    "indent2-ascii": lambda v: json.dumps(v, indent=2, allow_nan=False) + "\n",
}
_JSONL_STYLES = {
    "lines": lambda rows: "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows),
    "lines-ascii": lambda rows: "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows),
}


def is_archive(path: str | Path) -> bool:
    return Path(path).name.endswith(SUFFIX)


def archive_path_for(run_dir: str | Path) -> Path:
    """`<parent>/<run name>.run.json.gz`, beside the run directory."""
    run_dir = Path(run_dir)
    return run_dir.parent / (run_dir.name + SUFFIX)


def run_name(path: str | Path) -> str:
    """The run's name: the directory's, or the archive's file name without `.run.json.gz`."""
    name = Path(path).name
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name


def _skip_dir(name: str) -> bool:
    return name in SKIP_DIRS or name.startswith(SKIP_DIR_PREFIXES) or name.startswith(".")


def _skip_file(path: Path) -> bool:
    name = path.name
    if name in SKIP_FILES or name.startswith(SKIP_FILE_PREFIXES) or name.startswith("."):
        return True
    if name.endswith(SKIP_SUFFIXES) or path.is_symlink() or not path.is_file():
        return True
    return not name.endswith((".json", ".jsonl")) and path.stat().st_size > MAX_OTHER_BYTES


def _entry(rel: str, text: str) -> dict:
    """The archive entry of one file: parsed when it writes back to the same text, else the text."""
    try:
        if rel.endswith(".json"):
            value = json.loads(text)
            for style, dump in _JSON_STYLES.items():
                if dump(value) == text:
                    return {"json": value, "style": style}
        elif rel.endswith(".jsonl"):
            rows = [json.loads(line) for line in text.split("\n") if line]
            for style, dump in _JSONL_STYLES.items():
                if dump(rows) == text:
                    return {"jsonl": rows, "style": style}
    except (ValueError, RecursionError):
        pass  # not valid JSON (or NaN / Infinity inside): kept as text
    return {"text": text}


def _render(rel: str, entry: dict) -> str:
    if not isinstance(entry, dict):
        raise ValueError(f"entry of {rel} is not an object")
    if "text" in entry:
        if not isinstance(entry["text"], str):
            raise ValueError(f"text of {rel} is not a string")
        return entry["text"]
    if "json" in entry and entry.get("style") in _JSON_STYLES:
        return _JSON_STYLES[entry["style"]](entry["json"])
    if "jsonl" in entry and entry.get("style") in _JSONL_STYLES and isinstance(entry["jsonl"], list):
        return _JSONL_STYLES[entry["style"]](entry["jsonl"])
    raise ValueError(f"entry of {rel} has no text, json or jsonl of a known style")


def _walk(run_dir: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """(relative path, file) of every file to pack, and the relative paths left out; both sorted."""
    keep, skipped = [], []
    for top, dirs, files in os.walk(run_dir):
        top_path = Path(top)
        rel_top = top_path.relative_to(run_dir)
        for d in sorted(dirs):
            if _skip_dir(d) or (top_path / d).is_symlink():
                skipped.append((rel_top / d).as_posix() + "/")
        dirs[:] = sorted(d for d in dirs if not _skip_dir(d) and not (top_path / d).is_symlink())
        for f in sorted(files):
            rel, path = (rel_top / f).as_posix(), top_path / f
            if _skip_file(path):
                skipped.append(rel)
            else:
                keep.append((rel, path))
    keep.sort(key=lambda item: item[0])
    return keep, sorted(skipped)


def pack_run(run_dir: str | Path) -> dict:
    """The archive (as a dict) of a run directory: every file that matters, by relative path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("not a run directory (no such folder)", str(run_dir))
    keep, skipped = _walk(run_dir)
    files = {}
    for rel, path in keep:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append(rel)  # binary: not a result file
            continue
        files[rel] = _entry(rel, text)
    return {"format": FORMAT, "version": VERSION, "run": run_dir.name, "files": files, "skipped": sorted(skipped)}


def archive_bytes(archive: dict) -> bytes:
    """The gzip-compressed JSON of an archive dict, the same bytes for the same dict."""
    data = json.dumps(archive, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return gzip.compress(data, compresslevel=9, mtime=0)


def write_archive(run_dir: str | Path, dest_path: str | Path | None = None) -> Path:
    """Pack `run_dir` into `dest_path` (default `<run_dir>.run.json.gz` beside it), atomically."""
    dest = Path(dest_path) if dest_path is not None else archive_path_for(run_dir)
    if dest.is_dir():
        raise InputError("is a directory; name the archive file to write", str(dest))
    atomic_write_bytes(dest, archive_bytes(pack_run(run_dir)))
    return dest


def load_archive(path: str | Path) -> dict:
    """The archive dict stored in `path`; a missing, unreadable or foreign file is bad input."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such run archive" if not path.exists() else "not a run archive (not a file)", str(path))
    try:
        archive = json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"not a run archive (gzip-compressed JSON): {e}", str(path)) from None
    if not isinstance(archive, dict) or archive.get("format") != FORMAT or not isinstance(archive.get("files"), dict):
        raise InputError(f"not a run archive (no \"format\": \"{FORMAT}\" with files)", str(path))
    if archive.get("version") != VERSION:
        raise InputError(f"run archive version {archive.get('version')!r}; this citune reads version {VERSION}",
                         str(path))
    return archive


def _safe_relative(rel: str, path: Path) -> PurePosixPath:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel:
        raise InputError(f"run archive names a file outside the run directory: {rel!r}", str(path))
    return p


def read_archive(path: str | Path) -> dict[str, str]:
    """Relative file name -> the file's text, as it was in the run directory."""
    path = Path(path)
    archive = load_archive(path)
    out = {}
    for rel, entry in archive["files"].items():
        _safe_relative(rel, path)
        try:
            out[rel] = _render(rel, entry)
        except (ValueError, TypeError) as e:
            raise InputError(f"damaged run archive: {e}", str(path)) from None
    return out


def unpack_run(archive_path: str | Path, dest_dir: str | Path) -> Path:
    """Restore the packed files of an archive into `dest_dir` (created), byte for byte; return it."""
    files = read_archive(archive_path)
    dest = Path(dest_dir)
    if dest.exists() and not dest.is_dir():
        raise InputError("is a file; name a folder to restore the run into", str(dest))
    dest.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        atomic_write_bytes(dest.joinpath(*PurePosixPath(rel).parts), text.encode("utf-8"))
    return dest


def verify_archive(run_dir: str | Path, archive_path: str | Path) -> list[str]:
    """Differences between a run directory and its archive (empty: every file that `pack_run` keeps is
    in the archive with the same bytes, and the archive holds nothing else)."""
    run_dir = Path(run_dir)
    files = read_archive(archive_path)
    expected = {}
    for rel, path in _walk(run_dir)[0]:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        expected[rel] = raw
    problems = [f"missing from the archive: {rel}" for rel in sorted(set(expected) - set(files))]
    problems += [f"not in the run directory: {rel}" for rel in sorted(set(files) - set(expected))]
    problems += [f"differs: {rel}" for rel in sorted(set(files) & set(expected))
                 if files[rel].encode("utf-8") != expected[rel]]
    return problems


@contextmanager
def open_run(path: str | Path) -> Iterator[Path]:
    """A run directory for `path`: an archive is restored into a temporary folder named after the run
    (removed on exit); a run directory is yielded as it is."""
    path = Path(path)
    if path.is_dir():
        yield path
        return
    tmp = tempfile.mkdtemp(prefix="citune-run-")
    try:
        yield unpack_run(path, Path(tmp) / run_name(path))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find_runs(parent: str | Path) -> list[Path]:
    """The runs stored directly under `parent`, sorted by run name: archives (`*.run.json.gz`) and run
    directories (a folder with manifest.json); where both exist for one name, the archive."""
    parent = Path(parent)
    found: dict[str, Path] = {}
    if not parent.is_dir():
        return []
    for p in sorted(parent.iterdir()):
        if p.is_dir() and (p / "manifest.json").is_file():
            found.setdefault(p.name, p)
    for p in sorted(parent.glob("*" + SUFFIX)):
        if p.is_file():
            found[run_name(p)] = p
    return [found[name] for name in sorted(found)]


@contextmanager
def open_runs(parent: str | Path) -> Iterator[Path]:
    """A temporary folder named like `parent` that holds every run of `parent` (`find_runs`) as a run
    directory of the same name, archives restored and run directories copied without what `pack_run`
    skips; removed on exit. The readers that glob `PARENT/*-seed*/...` work on it unchanged."""
    parent = Path(parent)
    tmp = tempfile.mkdtemp(prefix="citune-runs-")
    try:
        out = Path(tmp) / (parent.resolve().name or "runs")
        out.mkdir()
        for run in find_runs(parent):
            if is_archive(run):
                unpack_run(run, out / run_name(run))
            else:
                for rel, path in _walk(run)[0]:
                    target = out / run.name / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
        yield out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
