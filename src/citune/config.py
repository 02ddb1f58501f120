"""The run configuration: pydantic models mirroring the YAML. Unknown keys are errors."""
from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from citune.errors import InputError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# The scorers of citune.evaluation.scores (a test keeps the two lists equal).
ScorerName = Literal["rougeL", "rougeL_precision", "exact_match", "option_accuracy", "number_accuracy",
                     "edit_similarity"]
SCORER_HELP = "primary score of the task: " + ", ".join(ScorerName.__args__)


class TinyModelConfig(Strict):
    """A tiny random Llama-architecture model for tests, with the real SmolLM2 tokenizer."""

    hidden_size: int = Field(64, gt=0, description="hidden size of the tiny model")
    intermediate_size: int = Field(128, gt=0, description="MLP size of the tiny model")
    num_hidden_layers: int = Field(2, gt=0, description="layers of the tiny model")
    num_attention_heads: int = Field(4, gt=0, description="attention heads of the tiny model")
    num_key_value_heads: int = Field(2, gt=0, description="key/value heads of the tiny model")
    seed: int = Field(0, description="seed of the tiny model's random weights")


class LoraConfig(Strict):
    """The LoRA adapter of `model.finetune: lora` (PEFT)."""

    r: int = Field(16, gt=0, description="LoRA rank")
    alpha: int = Field(32, gt=0, description="LoRA scaling alpha (the update is scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    # On a 2-core Zen 3 a LoRA step was 1.08x faster with the 16-bit masks (models/dropout.py).
    fast_dropout: bool = Field(True, description="on the CPU, dropout masks from 16-bit random numbers (the rate "
                               "rounded to 1/65536); false: PEFT's torch.nn.Dropout")
    target_modules: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj"],
                                      description="module names that get an adapter")


class ModelConfig(Strict):
    """The model trained along the stream."""

    name: str = Field("smollm2-135m", description="\"smollm2-135m\" (embedded default), \"tiny\", a local "
                      "Hugging Face model directory, or a .gguf file")
    tiny: TinyModelConfig = Field(TinyModelConfig(), description="the shape of `name: tiny`")
    finetune: Literal["lora", "full"] = Field("lora", description="train a LoRA adapter or every weight")
    lora: LoraConfig = Field(LoraConfig(), description="the adapter of `finetune: lora`")
    chat_template: bool = Field(True, description="wrap prompts in the tokenizer's chat template")
    prompt_truncation: Literal["middle", "left"] = Field(
        "middle", description="how a prompt longer than its bound is cut, in training and evaluation alike: the "
        "middle of the input, or its left part; the instruction's head is never cut")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="dtype the weights are stored and updated in; bfloat16 halves memory but every update "
        "is rounded to bf16's 8-bit mantissa, so small updates are lost (prefer train.mixed_precision: bf16, which "
        "keeps float32 weights and optimizer state)")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="attention kernel: torch's scaled_dot_product_attention, the eager reference, or "
        "flash-attention 2 (needs the flash-attn package and a CUDA GPU)")
    trust_remote_code: bool = Field(False, description="let transformers run a model directory's own code")


class SourceConfig(Strict):
    """One input of a task: a file or directory (`path`) or a SuperNI task id (`superni`)."""

    path: Optional[str] = Field(None, description="a data file or directory (relative to the config file)")
    superni: Optional[str] = Field(None, description="a SuperNI task id, looked up in data.superni_dir")
    format: Literal["auto", "superni", "alpaca", "prompt-answer", "chat"] = Field(
        "auto", description="the file format; auto: detected from the records")
    cap: Optional[int] = Field(None, gt=0, description="instances read from this source (a seeded sample)")
    split: Optional[Literal["train", "test", "validation"]] = Field(
        None, description="the role of this source's data; default: a benchmark task folder's file names say "
        "it (train.json; test.json; dev.json, eval.json, valid.json), any other file is training data")

    @model_validator(mode="after")
    def _one_input(self):
        if (self.path is None) == (self.superni is None):
            raise ValueError("a source needs exactly one of 'path' or 'superni'")
        return self


class TaskConfig(Strict):
    """One task of the stream and the files it is read from."""

    name: str = Field(description="the task's name in reports and the run directory")
    sources: list[SourceConfig] = Field(min_length=1, description="the files or SuperNI tasks it is read from")
    cap: Optional[int] = Field(None, gt=0, description="instances kept of the task (a seeded sample)")
    scorer: ScorerName = Field("rougeL", description=SCORER_HELP)


class BenchmarkConfig(Strict):
    """A folder of task folders as a benchmark ships it (TRACE, SAPT's SuperNI-15 / Long-15): one folder
    per task holding its split files (train/dev/eval/test .json or .jsonl)."""

    root: str = Field(description="the folder holding one folder per task")
    order: Union[list[str], str] = Field(
        description="the task folders in stream order, or a file listing them (one per line, or a JSON list), "
        "relative to root")
    heldout: list[str] = Field([], description="task folders only evaluated (their test files), never trained")
    scorer: ScorerName = Field("rougeL", description="the primary scorer of tasks not named in `scorers`")
    scorers: dict[str, ScorerName] = Field({}, description="task folder -> its primary scorer")
    format: Literal["auto", "superni", "alpaca", "prompt-answer", "chat"] = Field(
        "auto", description="the split files' format; auto: detected from the records")
    cap: Optional[int] = Field(None, gt=0, description="instances read per split file (a seeded sample)")


class SyntheticConfig(Strict):
    """The built-in synthetic task families (offline, for smoke runs and tests)."""

    families: list[str] = Field(["sentiment", "entity-extraction", "list-ops", "date-format"],
                                description="the trained task families, in stream order")
    heldout_families: list[str] = Field(["yes-no-membership"], description="families only evaluated")
    train_per_task: int = Field(64, gt=0, description="training instances generated per task")
    test_per_task: int = Field(16, gt=0, description="test instances generated per task")
    seed: int = Field(0, description="seed of the generator")


class SuperNIStreamConfig(Strict):
    """The SuperNI-16 stream of ../shared/data/superni/streams/superni16.json."""

    root: str = Field("../shared/data/superni", description="the SuperNI data folder")
    stream: str = Field("streams/superni16.json", description="the stream file, relative to root")
    order: str = Field("curriculum", description="the named category order of the stream file")
    categories: Optional[list[str]] = Field(None, description="a subset of the order, kept in order")
    heldout_categories: list[str] = Field([], description="categories only evaluated (for P-score)")
    per_source_cap: int = Field(40, gt=0, description="instances read per SuperNI task file")
    scorer: ScorerName = Field("rougeL", description=SCORER_HELP)


class DataConfig(Strict):
    """Where the stream comes from and how each task is split."""

    kind: Literal["synthetic", "tasks", "superni", "benchmark"] = Field(
        "synthetic", description="the stream: built-in synthetic tasks, tasks listed here, the SuperNI-16 "
        "stream, or a benchmark folder")
    synthetic: SyntheticConfig = Field(SyntheticConfig(), description="the stream of kind synthetic")
    superni: SuperNIStreamConfig = Field(SuperNIStreamConfig(), description="the stream of kind superni")
    benchmark: Optional[BenchmarkConfig] = Field(None, description="the folder of kind benchmark")
    superni_dir: Optional[str] = Field(None, description="where `superni:` task ids of sources are looked up")
    tasks: list[TaskConfig] = Field([], description="the stream of kind tasks, in order")
    heldout: list[TaskConfig] = Field([], description="tasks only evaluated (for P-score)")
    test_size: Union[float, int] = Field(0.2, description="test share (a fraction below 1) or count of each task "
                                         "without a test file")
    split_seed: int = Field(0, description="seed of the train/test split and of every cap's sample")
    split_by_run_seed: bool = Field(False, description="draw the train/test split (and every cap's sample) with "
                                    "the run's `seed` instead of `split_seed`, so that seeds measure data variance too")
    max_train_per_task: Optional[int] = Field(None, gt=0, description="training instances kept per task")
    test_overlap: Literal["error", "drop", "allow"] = Field(
        "error", description="a test instance that is also training data (same instruction, input and output): "
        "an error naming both files, `drop` (its training copies are removed and counted), or `allow`")

    @field_validator("test_size")
    @classmethod
    def _positive(cls, v):
        if v <= 0:
            raise ValueError("must be positive (a fraction below 1 or a count)")
        return v

    @model_validator(mode="after")
    def _read_by_kind(self, info: ValidationInfo):
        """A key that the chosen kind does not read must keep its default: set, it would be ignored. (Not
        checked in a run's stored config: it holds the defaults of the version that wrote it.)"""
        if (info.context or {}).get("stored"):
            return self
        for key, kinds in DATA_KEYS_BY_KIND.items():
            if self.kind not in kinds and getattr(self, key) != type(self).model_fields[key].get_default():
                raise PydanticCustomError(
                    "unread_key", "set, but data.kind '{kind}' does not read it (it is read by data.kind: {readers})",
                    {"key": key, "kind": self.kind, "readers": " or ".join(kinds)})
        return self


# The keys of `data` that only some kinds read (the others are read by every kind).
DATA_KEYS_BY_KIND = {
    "synthetic": ("synthetic",),
    "tasks": ("tasks",),
    "heldout": ("tasks",),
    "superni_dir": ("tasks",),
    "superni": ("superni", "tasks"),  # tasks: its root is where `superni:` source ids are found
    "benchmark": ("benchmark",),
    "test_size": ("tasks", "superni", "benchmark"),
    "split_seed": ("tasks", "superni", "benchmark"),
    "split_by_run_seed": ("tasks", "superni", "benchmark"),
}


class TrainConfig(Strict):
    """Training of each stage."""

    epochs: int = Field(1, gt=0, description="epochs over each stage's training set")
    batch_size: int = Field(8, gt=0, description="examples per global batch, split across processes")
    grad_accum: int = Field(1, gt=0, description="batches accumulated per optimiser update")
    lr: float = Field(3e-4, gt=0, description="peak learning rate (AdamW, warmup then cosine decay)")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="share of a stage's steps spent warming up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient-norm clip")
    max_length: int = Field(256, gt=8, description="longest training example (tokens, prompt and response)")
    group_by_length: bool = Field(True, description="batch examples of similar length (less padding)")
    references: Literal["first", "all"] = Field("first", description="train on each instance's first reference, "
                                                "or on one example per reference (the official InsCL code); with "
                                                "all, an instance with k references is k examples, the replayed "
                                                "ones included")
    threads: Optional[int] = Field(None, gt=0, description="PyTorch CPU threads; default: the cores per process")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="autocast compute through Accelerate, float32 weights and optimizer state kept: auto = "
        "the launch profile's setting under accelerate launch, else bf16 on a GPU that supports it and no on the CPU")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass (less "
                                         "memory, about a third more compute); LoRA and full fine-tuning")
    effective_batch: Optional[int] = Field(None, gt=0, description="the examples per optimiser update a recipe "
                                           "requires: batch_size x grad_accum must equal it, and at launch "
                                           "batch_size must split evenly over the processes")

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, v):
        return "no" if v is False else v  # YAML reads a bare `no` as false

    @model_validator(mode="after")
    def _effective_batch(self):
        if self.effective_batch is not None and self.batch_size * self.grad_accum != self.effective_batch:
            raise PydanticCustomError(
                "effective_batch", "{effective} required, but batch_size {batch} x grad_accum {accum} = {product}",
                {"key": "effective_batch", "effective": self.effective_batch, "batch": self.batch_size,
                 "accum": self.grad_accum, "product": self.batch_size * self.grad_accum})
        return self


class EvalConfig(Strict):
    """Evaluation after each stage."""

    batch_size: int = Field(16, gt=0, description="prompts generated per batch")
    max_new_tokens: int = Field(32, gt=0, description="generation bound of a task without its own")
    max_test_per_task: Optional[int] = Field(None, gt=0, description="test instances evaluated per task")
    max_prompt_length: Optional[int] = Field(
        None, gt=8, description="longest prompt shown at evaluation (tokens); default: the model's context window "
        "less the task's generation bound")
    scorers: list[ScorerName] = Field([], description="scores computed for every task besides ROUGE-L, exact "
                                      "match and its primary scorer")
    eval_unseen: bool = Field(True, description="also evaluate tasks not yet trained on (FWT needs it)")
    ub: Literal["stage", "expert"] = Field("stage", description="the upper bound of the normalised metrics: each "
                                           "task's score when just learned, or an expert trained on it alone")


class ReplayConfig(Strict):
    """The replay strategy and the shared budget; each method's section (`replay.inscl`, ...) is added by
    the method when it registers (`register_method`)."""

    strategy: str = Field("inscl", description="the registered replay strategy, or a combination joined by '+': at "
                          "most one replay strategy and training methods (inscl+ewc, random+agem, lwf)")
    per_task: int = Field(16, ge=0, description="replay budget b per earlier task: stage t replays b * (t - 1)")

    @field_validator("strategy")
    @classmethod
    def _registered(cls, name: str) -> str:
        parts = name.split("+")
        for part in parts:
            if part not in _STRATEGIES:
                raise ValueError(f"unknown replay strategy '{part}' (known: {', '.join(sorted(_STRATEGIES))})")
        if len(set(parts)) < len(parts):
            raise ValueError(f"'{name}' names a method twice")
        replays = [p for p in parts if _STRATEGIES[p] == "replay"]
        if len(replays) > 1:
            raise ValueError(f"'{name}' combines {len(replays)} replay strategies ({', '.join(replays)}); a run "
                             "has one replay strategy and any training methods (ewc, lwf, agem, olora, ...)")
        return name


class RunConfig(Strict):
    """How a run presents itself; none of these changes a number."""

    quiet: bool = Field(False, description="no progress bars")
    report_to: list[Literal["tensorboard", "wandb"]] = Field([], description="loggers of the training curves")
    cache_dir: Optional[str] = Field(None, description="the cache of embeddings, tags and key parts; default: "
                                     "$CITUNE_CACHE or the user cache folder")
    save_model: Literal["last", "none"] = Field("last", description="keep the final model (\"last\") or none")


class Config(Strict):
    """A run: the core sections; `assembled()` gives the class with the registered methods' sections."""

    seed: int = Field(1, description="the run's seed (training order, dropout, replay choices)")
    model: ModelConfig = Field(ModelConfig(), description="the trained model")
    data: DataConfig = Field(DataConfig(), description="the stream")
    train: TrainConfig = Field(TrainConfig(), description="training of each stage")
    eval: EvalConfig = Field(EvalConfig(), description="evaluation after each stage")
    replay: ReplayConfig = Field(default_factory=ReplayConfig, description="the replay strategy")
    run: RunConfig = Field(RunConfig(), description="presentation")

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


# ------------------------------------------------------------------ methods' sections

_SECTIONS: dict[str, type[Strict]] = {}  # replay.<key> -> the config class a method registered
_STRATEGIES: dict[str, str] = {}  # name -> role: "replay" (chooses R_t) or "training" (changes how a stage trains)
_ASSEMBLED: dict[tuple, type[Config]] = {}
METHOD_ENTRY_POINTS = "citune.methods"  # modules whose import registers replay methods (pyproject.toml)


def register_method(strategy: str, section: str | None = None, config: type[Strict] | None = None,
                    role: str = "replay") -> None:
    """Make `replay.strategy: <strategy>` valid and, with `config`, add the section `replay.<section>`."""
    if config is not None:
        if _SECTIONS.setdefault(section, config) is not config:
            raise ValueError(f"replay.{section} is registered by two config classes")
    _STRATEGIES[strategy] = role


def _load_methods() -> None:
    if _STRATEGIES:
        return
    for entry in entry_points(group=METHOD_ENTRY_POINTS):
        entry.load()
    if not _STRATEGIES:
        raise RuntimeError(f"no replay method is registered: the '{METHOD_ENTRY_POINTS}' entry points are "
                           "missing (install citune: pip install -e .)")


def assembled() -> type[Config]:
    """The config class of the registered methods: `Config` with `replay.<section>` for each section."""
    _load_methods()
    key = tuple(sorted(_SECTIONS.items()))
    if key not in _ASSEMBLED:
        sections = {name: (cls, Field(default_factory=cls, description=(cls.__doc__ or name).splitlines()[0]))
                    for name, cls in key}
        replay = create_model("ReplayConfig", __base__=ReplayConfig, **sections)
        _ASSEMBLED[key] = create_model("Config", __base__=Config, replay=(replay, Field(
            default_factory=replay, description=Config.model_fields["replay"].description)))
    return _ASSEMBLED[key]


def default_config() -> Config:
    """The embedded defaults, every registered method's section included."""
    return assembled()()


def describe_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) of every config key, sections walked into (a list of
    sections as `key[].sub`); `model`: default the assembled config."""
    rows = []
    for name, field in (model or assembled()).model_fields.items():
        key = prefix + (field.alias or name)
        default = "(required)" if field.is_required() else repr(field.get_default(call_default_factory=True))
        section, many = _section_of(field.annotation)
        if section is None:
            rows.append((key, _type_name(field.annotation), default, field.description or ""))
            continue
        rows.append((key, f"list of {section.__name__}" if many else "section", "" if not many else default,
                     field.description or ""))
        rows += describe_keys(section, key + ("[]." if many else "."))
    return rows


def _section_of(kind: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section class a key holds (through Optional), and whether it holds a list of them."""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return kind, False
    for arg in get_args(kind):
        section, _ = _section_of(arg)
        if section is not None:
            return section, get_origin(kind) is list
    return None, False


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) if isinstance(kind, type) else str(kind).replace("typing.", "")


def _parse_scalar(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(raw: dict, overrides: list[str], origin: str = "command line") -> dict:
    """Apply dotted `key=value` overrides (values parsed as YAML scalars or lists)."""
    for item in overrides:
        if "=" not in item:
            raise InputError(f"override '{item}' is not of the form key=value", origin)
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise InputError(f"override '{item}' has an empty key part", origin)
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InputError(f"override '{item}': '{p}' is not a section", origin)
        node[parts[-1]] = _parse_scalar(value)
    return raw


# The member tags pydantic puts in the location of a union's errors (`test_size.float`, `order.list[str]`).
_UNION_TAG = re.compile(r"^(int|float|str|bool|none|[a-z-]+\[.*\])$")


def _key_path(loc: tuple) -> str:
    """`data.tasks[0].sources[0].cap`: list indices in brackets, union member tags left out."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _UNION_TAG.match(part) or not path:
            path += f".{part}" if path else part
    return path or "(top level)"


def _problem(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    return error["msg"].removeprefix("Value error, ")


def _error_line(err: ValidationError) -> str:
    """The first problem as `key: problem`; the failures of one union's members are one problem."""
    problems: dict[str, list[str]] = {}
    for error in err.errors():
        sub = (error.get("ctx") or {}).get("key")  # a model validator's error about one of its keys
        key = _key_path(error["loc"]) + (f".{sub}" if sub else "")
        problems.setdefault(key, []).append(_problem(error))
    key, msgs = next(iter(problems.items()))
    n = len(problems) - 1
    more = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
    return f"{key}: {'; or '.join(dict.fromkeys(msgs))}{more}"


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, stored: bool = False) -> Config:
    """Read a YAML config (or the embedded default when `path` is None), apply overrides, validate;
    `stored`: the config.yaml of a run, whose defaults may be an older version's."""
    origin = str(path) if path else "embedded default config"
    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError("config file not found", origin)
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise InputError(f"not UTF-8 text (byte {e.start})", origin) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            rec = f"line {mark.line + 1}" if mark else None
            raise InputError(f"invalid YAML: {getattr(e, 'problem', e)}", origin, rec) from None
        if raw is None:
            raise InputError("holds no config (empty or only comments); to run the embedded default, give no "
                             "config file", origin)
        if not isinstance(raw, dict):
            raise InputError("the config must be a mapping of sections", origin)
    raw = apply_overrides(raw, overrides or [])
    try:
        cfg = assembled().model_validate(raw, context={"stored": stored})
    except ValidationError as e:
        raise InputError(_error_line(e), origin) from None
    cfg._origin = Path(path).resolve().parent if path else Path.cwd()  # type: ignore[attr-defined]
    cfg._file = origin  # type: ignore[attr-defined]
    return cfg


def config_file(cfg: Config) -> str:
    """The YAML file a config was read from, as error lines name it."""
    return getattr(cfg, "_file", "config")


def resolve_path(cfg: Config, p: str) -> Path:
    """Relative data paths are relative to the config file's directory, then to the cwd."""
    path = Path(p).expanduser()
    if path.is_absolute():
        return path
    base = getattr(cfg, "_origin", Path.cwd())
    cand = base / path
    return cand if cand.exists() or not (Path.cwd() / path).exists() else Path.cwd() / path


PRESENTATION = {"run": ("quiet", "report_to", "cache_dir", "save_model")}


def run_identity(cfg_dict: dict) -> dict:
    """A config dict without its presentation settings (`PRESENTATION`) and without the data keys its
    `data.kind` does not read; a stored config is first re-validated, so that keys added to the config
    schema since the run (with their defaults) and the defaults of the current version do not make a
    finished run look different."""
    try:
        full = assembled().model_validate(cfg_dict, context={"stored": True}).to_dict()
    except ValidationError:  # a key this version no longer knows: it stays, so the configs differ there
        full = _merged(default_config().to_dict(), cfg_dict)
    unread = [k for k, kinds in DATA_KEYS_BY_KIND.items() if full["data"].get("kind") not in kinds]
    full["data"] = {k: v for k, v in full["data"].items() if k not in unread}
    for section, keys in PRESENTATION.items():
        if isinstance(full.get(section), dict):
            full[section] = {k: v for k, v in full[section].items() if k not in keys}
    return full


def _merged(defaults: dict, given: dict) -> dict:
    out = dict(defaults)
    for key, value in given.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def first_difference(a: dict, b: dict, prefix: str = "") -> str | None:
    """The dotted key of the first difference between two config dicts (None when equal)."""
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            found = first_difference(va, vb, f"{prefix}{key}.")
            if found:
                return found
        elif va != vb or (key in a) != (key in b):
            return f"{prefix}{key}"
    return None


def config_difference(stored: dict, now: dict) -> str | None:
    """How a run's stored config differs from `now` beyond presentation settings, as
    "key: <stored value> there, <value> now" (None when they agree)."""
    a, b = run_identity(stored), run_identity(now)
    key = first_difference(a, b)
    return None if key is None else f"{key}: {_at(a, key)!r} there, {_at(b, key)!r} now"


def _at(d: dict, dotted: str):
    for key in dotted.split("."):
        d = d.get(key) if isinstance(d, dict) else None
    return d
