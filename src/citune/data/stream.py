"""Build the task stream of a config: `build_stream(cfg) -> Stream`.

`data.kind`:
- ``synthetic``: one task per family of `data.synthetic.families` (see `citune.data.synthetic`),
  held-out tasks from `heldout_families`; sizes come from `train_per_task`/`test_per_task`.
- ``tasks``: `data.tasks`, each one or more sources (a file, a directory, or a SuperNI task id looked
  up in `data.superni_dir`, default `<data.superni.root>/tasks`), and `data.heldout`.
- ``benchmark``: a folder of task folders as a benchmark ships it (`data.benchmark`): the folders of
  `order`, each a task whose split files (train/test/dev/eval .json) are used for their roles;
  `heldout` folders are evaluated on their test files only.
- ``superni``: the SuperNI-16 stream file `<root>/<stream>`: the categories of order `order`
  (restricted to `categories` when given, kept in the order's order), each category one task made of
  its SuperNI task files `<root>/tasks/<id>.json`; held-out tasks are `heldout_categories`, looked up
  in the stream's `held_out` groups (then in `categories`).

How a task's instances are chosen, in this order (every random step is seeded by `data.split_seed`,
or the run's `seed` with `data.split_by_run_seed`, and a name, never by global state, so the same
config gives the same stream byte for byte):

0. Split roles: a source is training, test or validation data (`SourceConfig.split`, else the name
   of a benchmark layout's file, else training). Validation data is never trained on. A task with
   test sources uses them as its test set (steps 3-5 then apply to its training sources only, and
   `test_size` does not apply).

1. Each file is read once; exact duplicate instances inside a file are kept once (counted in
   `Task.duplicates_dropped`, and said in one notice per task).
2. Each source (one file; a SuperNI task) is shuffled with a generator seeded by
   (`split_seed`, source label), so the same file yields the same sample whichever task holds it,
   then capped: `SourceConfig.cap` (for a directory: each of its files) or `superni.per_source_cap`.
3. The per-task cap (`TaskConfig.cap`) is divided between the sources in proportion to their sizes
   (largest remainder, at least one instance per source when the cap allows).
4. Train/test split, **stratified per source**: each source is split on its own and the parts are
   merged, so every source of a task is represented in its test split. A fraction `test_size` < 1
   takes round(test_size × n) test instances of a source of n, at least 1 and at most n − 1 (a
   source of one instance goes to test). A count `test_size` ≥ 1 is the task's total, divided
   between sources in proportion (at least one each when the count allows, keeping one training
   instance per source as long as possible); which sources get the remainder is drawn with the
   seed. A count larger than the task, or a split that leaves no training data, is an error.
5. `max_train_per_task` caps the training split, again divided between sources in proportion.
6. Train and test are each shuffled with a generator seeded by (`split_seed`, task name).

Held-out tasks are never trained: steps 1-3 apply, then their test sources (or, when they have none,
all their instances) go to `test`.

Last, test data must not be training data: a test instance whose (instruction, input, output) is a
training instance of any task is an error naming both sources, unless `data.test_overlap` is
`drop` (the training copies are removed and counted in `Task.overlap_dropped`; with
`max_train_per_task` the stream is built twice, so that they are removed before step 5 samples and the
cap counts trainable instances) or `allow`.

Task names become directory names (`stages/NN-<task>`), so they must pass `safe_task_name`.

Errors about the config name the placeholder file `CONFIG`; `build_stream` puts the YAML path in its place.
Errors about a task's data (no instances, no possible split) name its source files, and why they gave nothing.
"""
from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, Union

from citune.data.readers import Raw, SourceData, _read_text, load_source, make_instance
from citune.data.synthetic import synthetic_stream
from citune.types import Instance, Stream, Task
from citune.errors import InputError

if TYPE_CHECKING:
    from citune.config import Config, TaskConfig

CONFIG = "config"
MAX_NAME = 100
_NAME_CHARS = re.compile(r"[\w .,+()=@&'-]+")  # \w: Unicode letters and digits, and '_'

NAME_RULE = ("1-100 characters: letters, digits, space and _ - . , + ( ) = @ & '; starting with a letter, "
             "digit or '_'; not ending with a space or '.'; no '..'")


def safe_task_name(name: object, file: Optional[str] = CONFIG, record: Union[str, int, None] = None) -> str:
    """Return `name` if it is safe as a directory name under the run directory, else raise InputError.

    The rule (NAME_RULE) rejects path separators, '..', NUL and other control characters, a leading
    '.', '-' or space, a trailing space or '.', and the empty name.
    """
    if not isinstance(name, str) or not name:
        raise InputError("a task name must be a non-empty string", file, record)
    bad = None
    if "/" in name or "\\" in name:
        bad = "contains a path separator"
    elif "\x00" in name:
        bad = "contains a NUL character"
    elif ".." in name:
        bad = "contains '..'"
    elif len(name) > MAX_NAME:
        bad = f"is longer than {MAX_NAME} characters"
    elif not _NAME_CHARS.fullmatch(name):
        ch = next(c for c in name if not _NAME_CHARS.fullmatch(c))
        bad = f"contains the character {ch!r}"
    elif not (name[0].isalnum() or name[0] == "_"):
        bad = f"starts with {name[0]!r}"
    elif name[-1] in " .":
        bad = f"ends with {name[-1]!r}"
    if bad:
        raise InputError(f"task name {name!r} {bad} (allowed: {NAME_RULE})", file, record)
    return name


# ----------------------------------------------------------------------------- allocation / split
def _rng(*keys: object) -> random.Random:
    return random.Random("\x1f".join(["citune-data", *map(str, keys)]))


def allocate(sizes: list[int], total: int, keep_one: bool = False, rank: Optional[list[int]] = None) -> list[int]:
    """Divide `total` between parts of `sizes` in proportion (largest remainder, ties to the part of
    lowest `rank`, by default the first), giving every non-empty part at least one when `total`
    allows. With `keep_one`, a part of two or more gets at most size − 1 while the others can absorb
    the rest."""
    rank = rank if rank is not None else list(range(len(sizes)))
    n = sum(sizes)
    total = max(0, min(total, n))
    alloc = [0] * len(sizes)
    if total == 0:
        return alloc
    ideal = [total * s / n for s in sizes]
    nonempty = [i for i, s in enumerate(sizes) if s > 0]
    if total >= len(nonempty):
        for i in nonempty:
            alloc[i] = 1
    soft = [s - 1 if keep_one and s >= 2 else s for s in sizes]
    base = [max(alloc[i], min(soft[i], math.floor(ideal[i]))) for i in range(len(sizes))]
    if sum(base) <= total:
        alloc = base
    left = total - sum(alloc)
    for caps in (soft, sizes):
        while left > 0:
            cands = [i for i in range(len(sizes)) if alloc[i] < caps[i]]
            if not cands:
                break
            i = max(cands, key=lambda i: (ideal[i] - alloc[i], -rank[i]))
            alloc[i] += 1
            left -= 1
    return alloc


def _test_counts(sizes: list[int], test_size: Union[int, float], task: str, rank: list[int],
                 file: Optional[str] = CONFIG) -> list[int]:
    n = sum(sizes)
    if n < 2:
        raise InputError(f"task '{task}' has only {n} instance; a train/test split needs at least 2",
                         file, "data.test_size")
    if test_size < 1:
        counts = [0 if s == 0 else min(s - 1 if s >= 2 else 1, max(1, math.floor(test_size * s + 0.5)))
                  for s in sizes]
    else:
        if test_size != int(test_size):
            raise InputError(f"test_size {test_size} must be a fraction below 1 or a whole count",
                             CONFIG, "data.test_size")
        t = int(test_size)
        if t > n:
            raise InputError(f"test_size {t} is larger than task '{task}' ({n} instances)", file, "data.test_size")
        counts = allocate(sizes, t, keep_one=True, rank=rank)
    if sum(counts) >= n:
        why = ", one per source, and a source of one instance goes to test" if test_size < 1 else ""
        raise InputError(f"test_size {test_size} leaves no training data for task '{task}' ({n} instances{why})",
                         file, "data.test_size")
    return counts


Part = tuple[str, list[Raw]]  # (source label, shuffled and capped raw instances)
Origin = Mapping[str, SourceData]  # source label -> what its file gave


def _files(parts: Sequence[Part], origin: Origin) -> str:
    return ", ".join(dict.fromkeys(origin[src].file for src, _ in parts if src in origin)) or CONFIG


def _no_data(problem: str, parts: Sequence[Part], origin: Origin, where: Optional[str]) -> InputError:
    """`problem` blamed on the files of `parts`, with why each gave nothing."""
    sds = [origin[src] for src, _ in parts if src in origin]
    if not sds:
        return InputError(problem, CONFIG, where)
    why = sds[0].empty_cause() if len(sds) == 1 else "; ".join(f"{Path(sd.file).name}: {sd.empty_cause()}"
                                                                for sd in sds)
    return InputError(f"{problem}: {why}", _files(parts, origin), where)


def _capped(parts: list[Part], total: Optional[int]) -> list[Part]:
    if total is None:
        return parts
    return [(src, items[:k]) for (src, items), k in zip(parts, allocate([len(p[1]) for p in parts], total))]


def make_task(name: str, parts: list[Part], *, test_size: Union[int, float], split_seed: int,
              cap: Optional[int] = None, max_train: Optional[int] = None, heldout: bool = False,
              where: Optional[str] = None, test_parts: Sequence[Part] = (), validation_parts: Sequence[Part] = (),
              scorer: str = "rougeL", origin: Optional[Origin] = None,
              exclude: frozenset = frozenset()) -> Task:
    """Steps 3-6 of the module docstring on already shuffled and capped per-source parts: `parts`
    are the training sources, `test_parts` and `validation_parts` the sources of those roles.
    `origin` names the files in errors and gives the duplicates count. Training items whose
    (instruction, input, output) is in `exclude` (test instances of the stream, `data.test_overlap:
    drop`) are removed before `max_train` samples, so the cap counts trainable instances."""
    origin = origin or {}
    given = list(parts)
    parts = [(src, items) for src, items in parts if items]
    test_given = [(src, items) for src, items in test_parts if items]
    if heldout:
        if not parts and not test_given:
            raise _no_data(f"held-out task '{name}' has no instances", [*given, *test_parts], origin, where)
        train_parts, test_parts = [], test_given or _capped(parts, cap)
    elif test_given:
        if not parts:
            raise _no_data(f"task '{name}' has no training data" + ("" if given else
                           " (only test or validation sources)"), given, origin, where)
        train_parts, test_parts = _capped(parts, cap), test_given
    else:
        if not parts:
            raise _no_data(f"task '{name}' has no instances", given, origin, where)
        parts = _capped(parts, cap)
        rank = list(range(len(parts)))
        _rng(split_seed, "test-remainder", name).shuffle(rank)
        counts = _test_counts([len(p[1]) for p in parts], test_size, name, rank, _files(parts, origin))
        test_parts = [(src, items[:k]) for (src, items), k in zip(parts, counts)]
        train_parts = [(src, items[k:]) for (src, items), k in zip(parts, counts)]
    trainable = [(src, [r for r in items if _raw_key(r) not in exclude]) for src, items in train_parts]
    overlap = sum(len(a) - len(b) for (_, a), (_, b) in zip(train_parts, trainable))
    train_parts = _capped(trainable, max_train)

    def merged(ps: Sequence[Part], split: str) -> list[Instance]:
        xs = [make_instance(r, name, src) for src, items in ps for r in items]
        _rng(split_seed, "merge", split, name).shuffle(xs)
        return xs

    sources = {src for ps in (given, test_given, validation_parts) for src, _ in ps}
    return Task(name, merged(train_parts, "train"), merged(test_parts, "test"),
                merged(validation_parts, "validation"), scorer=scorer,
                duplicates_dropped=sum(origin[s].duplicates for s in sources if s in origin), overlap_dropped=overlap)


def _overlap_key(x: Instance, output: str) -> tuple[str, str, str]:
    return x.instruction.strip(), x.input.strip(), output.strip()


def _raw_key(r: Raw) -> tuple[str, str, str]:
    """`_overlap_key` of the training instance a raw record becomes (its first output is the target)."""
    return r[0].strip(), r[1].strip(), r[2][0].strip()


def test_keys(stream: Stream) -> frozenset:
    """The overlap key of every reference of every test instance of the stream."""
    return frozenset(_overlap_key(x, o) for t in stream.tasks + stream.heldout for x in t.test for o in x.outputs)


def check_overlap(stream: Stream, mode: str) -> Stream:
    """Test data that is also training data (`data.test_overlap`): an error, dropped from training, or allowed."""
    if mode == "allow":
        return stream
    tests = {_overlap_key(x, o): (t.name, x) for t in stream.tasks + stream.heldout for x in t.test for o in x.outputs}
    for task in stream.tasks:
        clash = [x for x in task.train if _overlap_key(x, x.output) in tests]
        if clash and mode == "error":
            test_task, test_x = tests[_overlap_key(clash[0], clash[0].output)]
            raise InputError(f"test instance of task '{test_task}' is also training data of task '{task.name}' "
                             f"({clash[0].source}); {len(clash)} such in that task: set data.test_overlap to 'drop' "
                             "(remove the training copies) or 'allow'", test_x.source, f"uid {test_x.uid}")
        if clash:
            task.train = [x for x in task.train if _overlap_key(x, x.output) not in tests]
            task.overlap_dropped += len(clash)
            if not task.train:
                raise InputError(f"task '{task.name}' has no training data left once its test instances are "
                                 "removed from it", CONFIG, "data.test_overlap")
    return stream


# ----------------------------------------------------------------------------- builders
ROLES = ("train", "test", "validation")


class _Loader:
    """Reads each file once per build and keeps its shuffled items per source, with their split role."""

    def __init__(self, split_seed: int, exclude: frozenset = frozenset(), notes: bool = True):
        self.split_seed = split_seed
        self.exclude = exclude  # training items never to keep (see make_task)
        self.notes = notes  # say what was dropped (not while a first pass only collects the test keys)
        self.files: dict[tuple[str, str, str], list[SourceData]] = {}
        self.origin: dict[str, SourceData] = {}

    def parts(self, path: Path, fmt: str, label: str, cap: Optional[int], where: str,
              split: Optional[str] = None) -> dict[str, list[Part]]:
        """The sources of a file or directory by role. `split` given: a benchmark task folder gives only
        its files of that role, a file or another folder is wholly of that role."""
        if not path.exists():
            raise InputError(f"file not found ({where})", str(path))
        key = (str(path), fmt, label)
        if key not in self.files:
            sds = load_source(path, fmt, label)
            for sd in sds:
                _rng(self.split_seed, "source", sd.source).shuffle(sd.items)
                self.origin[sd.source] = sd
            self.files[key] = sds
        sds = self.files[key]
        if split is not None and path.is_dir() and any(sd.role for sd in sds):
            sds = [sd for sd in sds if sd.role == split]
            if not sds:
                raise InputError(f"no {split} file in this benchmark task folder ({where})", str(path))
        out: dict[str, list[Part]] = {role: [] for role in ROLES}
        for sd in sds:
            out[split or sd.role or "train"].append((sd.source, sd.items[:cap] if cap else list(sd.items)))
        return out


def _merge_roles(into: dict[str, list[Part]], more: dict[str, list[Part]]) -> dict[str, list[Part]]:
    for role, parts in more.items():
        into.setdefault(role, []).extend(parts)
    return into


def _check_unique(names: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for name, where in names:
        if name in seen:
            raise InputError(f"duplicate task name '{name}' (also {seen[name]})", CONFIG, where)
        seen[name] = where


def _superni_dir(cfg: "Config") -> Path:
    from citune.config import resolve_path

    d = cfg.data
    return resolve_path(cfg, d.superni_dir) if d.superni_dir else resolve_path(cfg, d.superni.root) / "tasks"


def split_seed(cfg: "Config") -> int:
    """The seed of every split and cap sample: `data.split_seed`, or the run's seed."""
    return cfg.seed if cfg.data.split_by_run_seed else cfg.data.split_seed


def _task(cfg: "Config", name: str, roles: dict[str, list[Part]], heldout: bool, where: str, loader: _Loader,
          cap: Optional[int] = None, scorer: str = "rougeL") -> Task:
    from rich.markup import escape

    from citune.progress import console

    srcs = [p[0] for parts in roles.values() for p in parts]
    dup = next((x for x in srcs if srcs.count(x) > 1), None)
    if dup is not None:
        raise InputError(f"source '{dup}' is read twice in task '{name}'", CONFIG, where)
    task = make_task(name, roles.get("train", []), test_size=cfg.data.test_size, split_seed=split_seed(cfg), cap=cap,
                     max_train=cfg.data.max_train_per_task, heldout=heldout, where=where,
                     test_parts=roles.get("test", []), validation_parts=roles.get("validation", []), scorer=scorer,
                     origin=loader.origin, exclude=loader.exclude)
    if task.duplicates_dropped and loader.notes:  # said even with --quiet, which silences progress bars only
        files = ", ".join(f"{sd.file} ({sd.duplicates})" for sd in map(loader.origin.get, srcs) if sd.duplicates)
        n = task.duplicates_dropped
        console.print(escape(f"note: task '{name}' ({where}): {n} exact duplicate instance{'s' * (n > 1)} dropped, "
                             f"each kept once: {files}"), soft_wrap=True)  # one line, whatever the width
    return task


def _task_from_config(cfg: "Config", tc: "TaskConfig", where: str, loader: _Loader, heldout: bool) -> Task:
    from citune.config import resolve_path

    roles: dict[str, list[Part]] = {}
    for j, s in enumerate(tc.sources):
        w = f"{where}.sources[{j}]"
        if s.superni is not None:
            safe_task_name(s.superni, CONFIG, f"{w}.superni")
            path, fmt, label = _superni_dir(cfg) / f"{s.superni}.json", "superni", s.superni
        else:
            path, fmt, label = resolve_path(cfg, s.path), s.format, Path(s.path).as_posix()
        _merge_roles(roles, loader.parts(path, fmt, label, s.cap, w, s.split))
    return _task(cfg, tc.name, roles, heldout, where, loader, tc.cap, tc.scorer)


def _from_tasks(cfg: "Config", loader: _Loader) -> Stream:
    d = cfg.data
    if not d.tasks:
        raise InputError("data.kind is 'tasks' but data.tasks is empty", CONFIG, "data.tasks")
    named = [(t.name, f"data.tasks[{i}]") for i, t in enumerate(d.tasks)]
    named += [(t.name, f"data.heldout[{i}]") for i, t in enumerate(d.heldout)]
    for name, where in named:
        safe_task_name(name, CONFIG, f"{where}.name")
    _check_unique(named)
    tasks = [_task_from_config(cfg, t, f"data.tasks[{i}]", loader, False) for i, t in enumerate(d.tasks)]
    held = [_task_from_config(cfg, t, f"data.heldout[{i}]", loader, True) for i, t in enumerate(d.heldout)]
    return Stream(tasks, held)


def _synthetic(cfg: "Config", loader: _Loader) -> Stream:
    s = cfg.data.synthetic
    named = [(f, f"data.synthetic.families[{i}]") for i, f in enumerate(s.families)]
    named += [(f, f"data.synthetic.heldout_families[{i}]") for i, f in enumerate(s.heldout_families)]
    if not s.families:
        raise InputError("no synthetic families", CONFIG, "data.synthetic.families")
    _check_unique(named)
    stream = synthetic_stream(s.families, s.heldout_families, s.train_per_task, s.test_per_task, s.seed)
    for t in stream.tasks:
        kept = [x for x in t.train if _overlap_key(x, x.output) not in loader.exclude]
        t.overlap_dropped, t.train = len(t.train) - len(kept), kept[: cfg.data.max_train_per_task or None]
    return stream


def _str_lists(obj: object, key: str, file: str) -> dict[str, list[str]]:
    if not isinstance(obj, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in obj.values()):
        raise InputError(f"field '{key}' must map names to lists of strings", file, key)
    return obj


def _superni(cfg: "Config", loader: _Loader) -> Stream:
    from citune.config import resolve_path

    sc = cfg.data.superni
    root = resolve_path(cfg, sc.root)
    file = root / sc.stream
    if not file.is_file():
        raise InputError("SuperNI stream file not found (data.superni.root / data.superni.stream)", str(file))
    try:
        spec = json.loads(_read_text(file))
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg}", str(file), f"line {e.lineno} column {e.colno}") from None
    if not isinstance(spec, dict):
        raise InputError("a stream file must be a JSON object", str(file))
    for key in ("categories", "orders"):
        if key not in spec:
            raise InputError(f"missing field '{key}'", str(file))
    cats = _str_lists(spec["categories"], "categories", str(file))
    orders = _str_lists(spec["orders"], "orders", str(file))
    held_out = _str_lists(spec.get("held_out", {}), "held_out", str(file))
    if sc.order not in orders:
        raise InputError(f"unknown order '{sc.order}' (known: {', '.join(orders)})", CONFIG, "data.superni.order")
    order = orders[sc.order]
    for c in order:
        if c not in cats:
            raise InputError(f"order '{sc.order}' names the unknown category '{c}'", str(file), "orders")
    if sc.categories is not None:
        for i, c in enumerate(sc.categories):
            if c not in order:
                raise InputError(f"unknown category '{c}' (known: {', '.join(order)})",
                                 CONFIG, f"data.superni.categories[{i}]")
        wanted = set(sc.categories)
        order = [c for c in order if c in wanted]
    if not order:
        raise InputError("no categories selected", CONFIG, "data.superni.categories")
    held_ids = []
    for i, h in enumerate(sc.heldout_categories):
        ids = held_out.get(h, cats.get(h))
        if ids is None:
            raise InputError(f"unknown held-out category '{h}' (known: {', '.join(held_out)})",
                             CONFIG, f"data.superni.heldout_categories[{i}]")
        held_ids.append((h, ids, f"data.superni.heldout_categories[{i}]"))
    named = [(c, f"category '{c}' of order '{sc.order}'") for c in order]
    named += [(h, w) for h, _, w in held_ids]
    for name, where in named:
        safe_task_name(name, CONFIG, where)
    _check_unique(named)

    tasks_dir = root / "tasks"

    def build(name: str, ids: list[str], heldout: bool, where: str) -> Task:
        roles: dict[str, list[Part]] = {}
        for tid in dict.fromkeys(ids):
            safe_task_name(tid, str(file), f"{where}: task id")
            _merge_roles(roles, loader.parts(tasks_dir / f"{tid}.json", "superni", tid, sc.per_source_cap,
                                             f"SuperNI task of {where}"))
        return _task(cfg, name, roles, heldout, where, loader, scorer=sc.scorer)

    tasks = [build(c, cats[c], False, f"category '{c}'") for c in order]
    held = [build(h, ids, True, w) for h, ids, w in held_ids]
    return Stream(tasks, held)


def _order_list(cfg: "Config", root: Path) -> list[str]:
    from citune.config import resolve_path

    order = cfg.data.benchmark.order
    if isinstance(order, list):
        return order
    file = root / order if (root / order).is_file() else resolve_path(cfg, order)
    text = _read_text(file)
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON: {e.msg}", str(file), f"line {e.lineno} column {e.colno}") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError("an order file in JSON must be a list of task folder names", str(file))
        return names
    return [n.strip() for line in text.splitlines() for n in line.split(",") if n.strip() and not n.startswith("#")]


def _benchmark(cfg: "Config", loader: _Loader) -> Stream:
    from citune.config import resolve_path

    b = cfg.data.benchmark
    if b is None:
        raise InputError("data.kind is 'benchmark' but the data.benchmark section is missing", CONFIG, "data.benchmark")
    root = resolve_path(cfg, b.root)
    if not root.is_dir():
        raise InputError("benchmark folder not found (data.benchmark.root)", str(root))
    order = _order_list(cfg, root)
    if not order:
        raise InputError("the benchmark order names no task", CONFIG, "data.benchmark.order")
    named = [(n, f"data.benchmark.order[{i}]") for i, n in enumerate(order)]
    named += [(n, f"data.benchmark.heldout[{i}]") for i, n in enumerate(b.heldout)]
    for name, where in named:
        safe_task_name(name, CONFIG, where)
        if not (root / name).is_dir():
            raise InputError(f"no task folder '{name}' in the benchmark folder {root}", CONFIG, where)
    _check_unique(named)
    for name in b.scorers:
        if name not in dict(named):
            raise InputError(f"scorer given for '{name}', which is not a task of the stream", CONFIG,
                             "data.benchmark.scorers")

    def build(name: str, heldout: bool, where: str) -> Task:
        roles = loader.parts(root / name, b.format, name, b.cap, where)
        return _task(cfg, name, roles, heldout, where, loader, scorer=b.scorers.get(name, b.scorer))

    return Stream([build(n, False, w) for n, w in named[:len(order)]],
                  [build(n, True, w) for n, w in named[len(order):]])


def build_stream(cfg: "Config") -> Stream:
    """The stream of a config (see the module docstring); raises InputError on bad input."""
    from citune.config import config_file

    builders = {"synthetic": _synthetic, "tasks": _from_tasks, "superni": _superni, "benchmark": _benchmark}
    kind = cfg.data.kind
    try:
        if kind not in builders:
            raise InputError(f"unknown data.kind '{kind}'", CONFIG, "data.kind")
        twice = cfg.data.test_overlap == "drop" and bool(cfg.data.max_train_per_task)
        stream = builders[kind](cfg, _Loader(split_seed(cfg), notes=not twice))
        if twice:  # again, with the training copies of the test instances removed before the cap
            stream = builders[kind](cfg, _Loader(split_seed(cfg), test_keys(stream)))
        return check_overlap(stream, cfg.data.test_overlap)
    except InputError as e:
        if e.file != CONFIG:
            raise
        raise InputError(e.problem, config_file(cfg), e.record) from e
