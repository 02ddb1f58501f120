"""Readers for the four input formats, with format auto-detection.

Formats (``SourceConfig.format``):

- ``superni``: a SuperNI task file (a JSON object with ``Definition`` and ``Instances``); the
  instruction is ``Definition[0]``, each instance has ``input`` and a list ``output``; the source of
  every instance is the SuperNI task id (the file name without ``.json``).
- ``alpaca``: a JSON array or JSONL of ``{"instruction", "input" (optional), "output"}``.
- ``prompt-answer``: a JSON array or JSONL of ``{"prompt", "answer"}`` (TRACE); the prompt is the
  instruction and the input is empty.
- ``chat``: JSONL (or a JSON array) of ``{"messages": [{"role", "content"}, ...]}``; the instruction
  is the system message(s) plus the user turns before the last assistant message (joined by a
  blank line), the output is the last assistant message; earlier assistant turns are dropped.

``output``/``answer`` may be a string or a list of strings (all are references, the first is the
training target). Whitespace-only references are dropped and an instance left with no reference is
skipped (a few real SuperNI instances have an empty output); wrong types are errors. Exact duplicate
instances inside one source are kept once, so ``uid`` identifies an instance; ``SourceData`` counts the
records read, those skipped and the duplicates dropped.

Auto-detection takes the first format (superni, chat, alpaca, prompt-answer) whose required fields
(``FIELDS``) the file's first record has; a record that has only some of a format's fields is
reported as that format missing them.

A directory source reads every ``*.json``/``*.jsonl``/``*.ndjson`` file in it (sorted by name,
hidden files ignored), each file a source of its own, each auto-detected unless a format is named.

Benchmark layouts: a directory whose data files are all split files (``train``, ``test``, ``dev``,
``eval``, ``valid``, ``validation``, ``val`` with a data suffix; the SAPT/Long-15 and TRACE releases)
is a task folder: each file gets the split role its name says (``SourceData.role``: train, test or
validation) and names its instances' source ``<folder label>/<file name>``, also a single file of
such a folder. Any other file has no role of its own (None: the stream treats it as training data).

Every problem raises :class:`citune.errors.InputError` naming the file, the record (the 0-based
index of a JSON array, ``line N`` of a JSONL file, ``Instances[i]`` of a SuperNI file) and the
problem.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from citune.types import Instance, instance_uid
from citune.errors import InputError

FORMATS = ("superni", "alpaca", "prompt-answer", "chat")
DATA_SUFFIXES = (".json", ".jsonl", ".ndjson")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")

Raw = tuple[str, str, tuple[str, ...]]  # (instruction, input, outputs)
Record = Union[int, str]


@dataclass
class SourceData:
    """The validated, de-duplicated records of one file, in file order."""

    source: str  # the instance's `source`: the label of the file, or the SuperNI task id
    file: str  # the path, for error messages
    format: str
    items: list[Raw]
    role: Optional[str] = None  # train, test or validation when a benchmark layout names it
    records: int = 0  # records read
    no_output: int = 0  # records skipped: no non-empty reference
    duplicates: int = 0  # exact duplicates dropped

    def instances(self, task: str = "") -> list[Instance]:
        return [make_instance(r, task, self.source) for r in self.items]

    def empty_cause(self) -> str:
        """Why this source gives no instances."""
        superni = self.format == "superni"
        if not self.records:
            return "the Instances list is empty" if superni else "no records"
        if self.no_output == self.records:
            unit = "instance" if superni else "record"
            return f"every {unit}'s {_OUTPUT_NAME[self.format]} is empty ({self.records} read)"
        return "no instances left after capping"


_OUTPUT_NAME = {"superni": "output", "alpaca": "output", "prompt-answer": "answer", "chat": "last assistant message"}


def make_instance(raw: Raw, task: str, source: str) -> Instance:
    ins, inp, outs = raw
    return Instance(ins, inp, outs, task=task, source=source, uid=instance_uid(ins, inp, outs, source))


# ----------------------------------------------------------------------------- file decoding
def _read_text(path: Path) -> str:
    if path.is_dir():
        raise InputError("is a directory, expected a file", str(path))
    if not path.is_file():
        raise InputError("file not found", str(path))
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (byte {e.start}, line {line})", str(path)) from None
    return text[1:] if text.startswith("\ufeff") else text


def _jsonl_records(text: str, file: str) -> Iterator[tuple[Record, Any]]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON: {e.msg} (column {e.colno})", file, f"line {n}") from None
        yield f"line {n}", obj


def _parse(path: Path) -> tuple[str, Any]:
    """('json', value) or ('jsonl', [(record, value), ...])."""
    text = _read_text(path)
    file = str(path)
    if not text.strip():
        raise InputError("the file is empty", file)
    if path.suffix.lower() in _JSONL_SUFFIXES:
        return "jsonl", list(_jsonl_records(text, file))
    try:
        return "json", json.loads(text)
    except json.JSONDecodeError as e:
        # A JSONL file named *.json: the first line is a complete object and more data follows.
        if e.msg == "Extra data" and e.lineno > 1:
            first = text.lstrip().splitlines()[0]
            try:
                ok = isinstance(json.loads(first), dict)
            except json.JSONDecodeError:
                ok = False
            if ok:
                return "jsonl", list(_jsonl_records(text, file))
        raise InputError(f"invalid JSON: {e.msg}", file, f"line {e.lineno} column {e.colno}") from None


# ----------------------------------------------------------------------------- detection
FIELDS = {  # format: (required, optional) fields, in detection order
    "superni": (("Definition", "Instances"), ()),
    "chat": (("messages",), ()),
    "alpaca": (("instruction", "output"), ("input",)),
    "prompt-answer": (("prompt", "answer"), ()),
}
_RECORD_FORMATS = ("chat", "alpaca", "prompt-answer")


def _complete(obj: Any, formats: tuple[str, ...]) -> Optional[str]:
    keys = set(obj) if isinstance(obj, dict) else set()
    return next((f for f in formats if keys >= set(FIELDS[f][0])), None)


def _near(obj: Any, formats: tuple[str, ...]) -> Optional[str]:
    """'looks like FORMAT but has no 'FIELD' field' for the formats sharing most fields with `obj`."""
    keys = set(obj) if isinstance(obj, dict) else set()
    shared = {f: len(keys & {*FIELDS[f][0], *FIELDS[f][1]}) for f in formats}
    best = max(shared.values())
    if not best:
        return None
    return "looks like " + " or ".join(
        f"{f} but has no {' or '.join(repr(k) for k in FIELDS[f][0] if k not in keys)} field"
        for f in formats if shared[f] == best)


def _detect(kind: str, value: Any, file: str) -> str:
    if kind == "json" and isinstance(value, dict):
        if _complete(value, ("superni",)):
            return "superni"
        raise InputError(_near(value, ("superni",)) or "cannot detect the format: a JSON object that is not a "
                         "SuperNI task file (no 'Definition' and 'Instances'); expected a SuperNI task or an array "
                         "of records", file)
    records = value if kind == "jsonl" else list(enumerate(value)) if isinstance(value, list) else None
    if records is None:
        raise InputError(f"cannot detect the format: top-level JSON {type(value).__name__}, "
                         "expected an array of records or a SuperNI task object", file)
    if not records:
        raise InputError("no records in the file", file)
    rec, first = records[0]
    fmt = _complete(first, _RECORD_FORMATS)
    if fmt is None:
        keys = sorted(first) if isinstance(first, dict) else type(first).__name__
        expected = ", ".join(f"{'/'.join(map(repr, FIELDS[f][0]))} ({f})" for f in _RECORD_FORMATS)
        raise InputError(_near(first, _RECORD_FORMATS)
                         or f"cannot detect the format from the fields {keys}: expected {expected}", file, rec)
    return fmt


def detect_format(path: Union[str, Path]) -> str:
    """The format of a data file: 'superni', 'alpaca', 'prompt-answer' or 'chat'."""
    kind, value = _parse(Path(path))
    return _detect(kind, value, str(path))


# ----------------------------------------------------------------------------- field checks
def _tname(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _text(obj: dict, key: str, file: str, rec: Record, *, required: bool = True, nonempty: bool = True) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise InputError(f"missing field '{key}'", file, rec)
        return ""
    v = obj[key]
    if not isinstance(v, str):
        raise InputError(f"field '{key}' must be a string (got {_tname(v)})", file, rec)
    if nonempty and not v.strip():
        raise InputError(f"field '{key}' is empty", file, rec)
    return v


def _outputs(obj: dict, key: str, file: str, rec: Record) -> tuple[str, ...]:
    if key not in obj:
        raise InputError(f"missing field '{key}'", file, rec)
    v = obj[key]
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        got = _tname(v) if not isinstance(v, list) else "a list containing " + next(
            _tname(s) for s in v if not isinstance(s, str))
        raise InputError(f"field '{key}' must be a string or a list of strings (got {got})", file, rec)
    return tuple(s for s in v if s.strip())


def _record_dict(obj: Any, file: str, rec: Record) -> dict:
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object (got {_tname(obj)})", file, rec)
    return obj


def _alpaca(obj: dict, file: str, rec: Record) -> Optional[Raw]:
    ins = _text(obj, "instruction", file, rec)
    inp = _text(obj, "input", file, rec, required=False, nonempty=False)
    outs = _outputs(obj, "output", file, rec)
    return (ins, inp, outs) if outs else None


def _prompt_answer(obj: dict, file: str, rec: Record) -> Optional[Raw]:
    ins = _text(obj, "prompt", file, rec)
    outs = _outputs(obj, "answer", file, rec)
    return (ins, "", outs) if outs else None


_ROLES = ("system", "user", "assistant")


def _chat(obj: dict, file: str, rec: Record) -> Optional[Raw]:
    if "messages" not in obj:
        raise InputError("missing field 'messages'", file, rec)
    msgs = obj["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise InputError("field 'messages' must be a non-empty list of {role, content} objects", file, rec)
    turns = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise InputError(f"messages[{i}] must be an object with 'role' and 'content' (got {_tname(m)})", file, rec)
        role, content = m.get("role"), m.get("content")
        if role not in _ROLES:
            raise InputError(f"messages[{i}]: role {role!r} is not one of {', '.join(_ROLES)}", file, rec)
        if not isinstance(content, str):
            raise InputError(f"messages[{i}]: 'content' must be a string (got {_tname(content)})", file, rec)
        turns.append((role, content))
    last = max((i for i, (r, _) in enumerate(turns) if r == "assistant"), default=None)
    if last is None:
        raise InputError("no assistant message", file, rec)
    parts = [c for r, c in turns[:last] if r in ("system", "user") and c.strip()]
    if not parts:
        raise InputError("no system or user message before the last assistant message", file, rec)
    out = turns[last][1]
    return ("\n\n".join(parts), "", (out,)) if out.strip() else None


_RECORD_READERS = {"alpaca": _alpaca, "prompt-answer": _prompt_answer, "chat": _chat}


def _superni(value: Any, file: str) -> list[Optional[Raw]]:
    if not isinstance(value, dict):
        raise InputError(f"a SuperNI task file must be a JSON object (got {_tname(value)})", file)
    if "Definition" not in value:
        raise InputError("missing field 'Definition'", file)
    d = value["Definition"]
    if isinstance(d, list) and d and isinstance(d[0], str):
        d = d[0]
    if not isinstance(d, str) or not d.strip():
        raise InputError("field 'Definition' must be a non-empty list of strings", file)
    if "Instances" not in value:
        raise InputError("missing field 'Instances'", file)
    insts = value["Instances"]
    if not isinstance(insts, list):
        raise InputError(f"field 'Instances' must be a list (got {_tname(insts)})", file)
    items = []
    for i, x in enumerate(insts):
        rec = f"Instances[{i}]"
        x = _record_dict(x, file, rec)
        inp = _text(x, "input", file, rec, nonempty=False)
        outs = _outputs(x, "output", file, rec)
        items.append((d, inp, outs) if outs else None)
    return items


# ----------------------------------------------------------------------------- public readers
def _source_data(source: str, file: str, fmt: str, raws: list[Optional[Raw]]) -> SourceData:
    """`raws`: one per record read, None for a record skipped for having no reference."""
    kept = [r for r in raws if r is not None]
    items = list(dict.fromkeys(kept))
    return SourceData(source, file, fmt, items, records=len(raws), no_output=len(raws) - len(kept),
                      duplicates=len(kept) - len(items))


def _files_of(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in DATA_SUFFIXES)
    if not files:
        raise InputError(f"no {'/'.join(DATA_SUFFIXES)} files in the directory", str(path))
    return files


def load_file(path: Union[str, Path], format: str = "auto", label: Optional[str] = None) -> SourceData:
    """Read and validate one file. `label` is the instance source (default: the path as given);
    SuperNI files always use their task id (the file name without extension)."""
    path = Path(path)
    file = str(path)
    if format != "auto" and format not in FORMATS:
        raise InputError(f"unknown format '{format}' (known: auto, {', '.join(FORMATS)})", file)
    kind, value = _parse(path)
    fmt = _detect(kind, value, file) if format == "auto" else format
    if fmt == "superni":
        if kind != "json":
            raise InputError("a SuperNI task file must be one JSON object, not JSON lines", file)
        return _source_data(path.stem, file, fmt, _superni(value, file))
    if kind == "json":
        if not isinstance(value, list):
            raise InputError(f"the {fmt} format needs a JSON array of records or JSON lines "
                             f"(got a JSON {_tname(value) if not isinstance(value, dict) else 'object'})", file)
        records = enumerate(value)
    else:
        records = value
    reader = _RECORD_READERS[fmt]
    raws = [reader(_record_dict(obj, file, rec), file, rec) for rec, obj in records]
    return _source_data(label if label is not None else path.as_posix(), file, fmt, raws)


SPLIT_ROLES = {"train": "train", "test": "test", "dev": "validation", "eval": "validation", "valid": "validation",
               "validation": "validation", "val": "validation"}


def layout_roles(folder: Path) -> Optional[dict[Path, str]]:
    """The split role of every data file of a benchmark task folder, or None when `folder` is not one."""
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in DATA_SUFFIXES]
    roles = {p: SPLIT_ROLES.get(p.stem.lower()) for p in files}
    return roles if roles and all(roles.values()) else None


def _with_role(sd: SourceData, role: str, source: str) -> SourceData:
    sd.role, sd.source = role, source
    return sd


def load_source(path: Union[str, Path], format: str = "auto", label: Optional[str] = None) -> list[SourceData]:
    """A file gives one SourceData, a directory one per data file in it (sorted by name); files of a
    benchmark task folder carry their split role."""
    path = Path(path)
    label = label if label is not None else path.as_posix()
    if path.is_dir():
        roles = layout_roles(path) or {}
        out = []
        for p in _files_of(path):
            name = f"{label.rstrip('/')}/{p.name}"
            sd = load_file(p, format, name)
            out.append(_with_role(sd, roles[p], name) if p in roles else sd)
        return out
    sd = load_file(path, format, label)
    role = (layout_roles(path.parent) or {}).get(path) if path.parent.is_dir() else None
    return [_with_role(sd, role, label) if role else sd]


def read_source(path: Union[str, Path], format: str = "auto", task: str = "",
                label: Optional[str] = None) -> list[Instance]:
    """All instances of a file or directory, in file order, with `task`, `source` and `uid` set."""
    return [x for sd in load_source(path, format, label) for x in sd.instances(task)]


def _read_as(fmt: str):
    def read(path: Union[str, Path], task: str = "", label: Optional[str] = None) -> list[Instance]:
        return read_source(path, fmt, task, label)

    read.__name__ = f"read_{fmt.replace('-', '_')}"
    read.__doc__ = f"Read a {fmt} file (or a directory of them) as instances of `task`."
    return read


read_superni = _read_as("superni")
read_alpaca = _read_as("alpaca")
read_prompt_answer = _read_as("prompt-answer")
read_chat = _read_as("chat")
