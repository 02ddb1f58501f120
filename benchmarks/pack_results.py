"""Stored run directories -> one compact archive per run (`<run>.run.json.gz`, citune.runs.archive),
and back.

    python benchmarks/pack_results.py DIR [DIR ...] [--keep]   # pack every run directory below DIR
    python benchmarks/pack_results.py --unpack SRC DEST         # restore SRC's runs as run directories

Packing: every run directory found below DIR (a folder with manifest.json; the search does not go into
a run directory) is packed into `<run>.run.json.gz` beside it. The archive is unpacked into a temporary
folder and compared with the directory file by file: every file of the directory must come back
byte-identical, or lie under a path the archive lists as skipped (plots/, report.md, report.html, model
files; citune.runs.archive says which). Only then is the directory removed (`--keep`: never).

Unpacking: SRC is an archive (restored into the run directory DEST) or a folder; a folder is copied to
DEST with each archive in it restored as the run directory of the same name, so that a stored
benchmark (`benchmarks/results/superni/<dir>`) becomes a compare parent `citune report DEST` reads:

    python benchmarks/pack_results.py --unpack benchmarks/results/superni/curriculum-8cat /tmp/c8 \\
        && citune report /tmp/c8
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from citune.errors import InputError
from citune.runs.archive import SUFFIX, is_archive, load_archive, run_name, unpack_run, write_archive


def run_dirs_below(root: Path) -> list[Path]:
    """Run directories (folders with manifest.json) at or below `root`, not looking inside one."""
    if (root / "manifest.json").is_file():
        return [root]
    found = []
    for top, dirs, _ in os.walk(root):
        dirs.sort()
        for d in list(dirs):
            if (Path(top) / d / "manifest.json").is_file():
                found.append(Path(top) / d)
                dirs.remove(d)
    return sorted(found)


def tree_bytes(path: Path) -> tuple[int, int]:
    """(files, bytes) of everything below `path` (a file: itself)."""
    if path.is_file():
        return 1, path.stat().st_size
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def check_restored(run_dir: Path, archive: Path) -> list[str]:
    """Unpack `archive` into a temporary folder and compare with `run_dir`: every file of the directory
    comes back byte-identical or lies under a skipped path, and nothing else comes back."""
    skipped = load_archive(archive).get("skipped") or []
    with tempfile.TemporaryDirectory(prefix="pack-check-") as tmp:
        restored = unpack_run(archive, Path(tmp) / run_dir.name)
        got = {p.relative_to(restored).as_posix(): p for p in restored.rglob("*") if p.is_file()}
        problems = []
        for p in sorted(run_dir.rglob("*")):
            if not p.is_file():
                continue
            rel = p.relative_to(run_dir).as_posix()
            if rel in got:
                if got.pop(rel).read_bytes() != p.read_bytes():
                    problems.append(f"differs after unpacking: {rel}")
            elif not any(rel == s or (s.endswith("/") and rel.startswith(s)) for s in skipped):
                problems.append(f"not restored and not listed as skipped: {rel}")
        problems += [f"restored but not in the directory: {rel}" for rel in sorted(got)]
    return problems


def pack(dirs: list[Path], keep: bool) -> int:
    runs = [r for d in dirs for r in run_dirs_below(d)]
    if not runs:
        raise InputError("no run directory (a folder with manifest.json) below " + ", ".join(map(str, dirs)))
    before = after = files_before = 0
    for run in runs:
        n, size = tree_bytes(run)
        archive = write_archive(run)
        problems = check_restored(run, archive)
        if problems:
            print(f"{run}: NOT removed, the archive does not restore it:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        before, files_before, after = before + size, files_before + n, after + archive.stat().st_size
        if not keep:
            shutil.rmtree(run)
        print(f"{archive}: {n} files, {size:,} bytes -> {archive.stat().st_size:,} bytes"
              + ("" if keep else "; directory removed"))
    print(f"{len(runs)} runs: {files_before} files, {before:,} bytes -> {len(runs)} archives, {after:,} bytes")
    return 0


def unpack(src: Path, dest: Path) -> int:
    if is_archive(src):
        print(unpack_run(src, dest))
        return 0
    if not src.is_dir():
        raise InputError("no such folder or run archive", str(src))
    if dest.resolve() == src.resolve() or dest.resolve().is_relative_to(src.resolve()):
        raise InputError("restore into a folder outside the stored results", str(dest))
    runs = 0
    for top, dirs, files in os.walk(src):
        dirs.sort()
        rel_top = Path(top).relative_to(src)
        for f in sorted(files):
            path, out = Path(top) / f, dest / rel_top
            if f.endswith(SUFFIX):
                unpack_run(path, out / run_name(path))
                runs += 1
            else:
                out.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out / f)
    print(f"{dest}: {runs} runs restored from {src}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", type=Path, help="folders whose run directories are packed")
    ap.add_argument("--keep", action="store_true", help="keep the run directories after packing")
    ap.add_argument("--unpack", nargs=2, type=Path, metavar=("SRC", "DEST"),
                    help="restore an archive, or a folder of them, as run directories under DEST")
    args = ap.parse_args(argv)
    try:
        if args.unpack:
            if args.dirs:
                ap.error("--unpack takes SRC and DEST only")
            return unpack(*args.unpack)
        if not args.dirs:
            ap.error("name the folders to pack (or --unpack SRC DEST)")
        return pack(args.dirs, args.keep)
    except InputError as e:
        print(f"error: {e.line()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
