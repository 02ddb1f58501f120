"""The run configuration: pydantic models mirroring the YAML. Unknown keys are errors."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator, ValidationInfo
from pydantic_core import PydanticCustomError

from citune.errors import InputError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


PositiveInt = Field(gt=0)

# The scorers of citune.evaluation.scores (a test keeps the two lists equal).
ScorerName = Literal["rougeL", "rougeL_precision", "exact_match", "option_accuracy", "number_accuracy",
                     "edit_similarity"]
SCORER_HELP = "primary score of the task: " + ", ".join(ScorerName.__args__)


class TinyModelConfig(Strict):
    """A tiny random Llama-architecture model for tests, with the real SmolLM2 tokenizer."""

    hidden_size: int = Field(64, gt=0)
    intermediate_size: int = Field(128, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    num_attention_heads: int = Field(4, gt=0)
    num_key_value_heads: int = Field(2, gt=0)
    seed: int = 0


class LoraConfig(Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    # On the CPU, dropout masks from 16-bit random numbers (models/dropout.py): the rate is rounded
    # to 1/65536 and a LoRA step was 1.08x faster on a 2-core Zen 3; false: PEFT's torch.nn.Dropout.
    fast_dropout: bool = True
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class ModelConfig(Strict):
    # "smollm2-135m" (embedded default), "tiny", a local HF directory, or a .gguf file.
    name: str = "smollm2-135m"
    tiny: TinyModelConfig = TinyModelConfig()
    finetune: Literal["lora", "full"] = "lora"
    lora: LoraConfig = LoraConfig()
    chat_template: bool = True
    prompt_truncation: Literal["middle", "left"] = Field(
        "middle", description="how a prompt longer than its bound is cut, in training and evaluation alike: the "
        "middle of the input, or its left part; the instruction's head is never cut")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    trust_remote_code: bool = False


class SourceConfig(Strict):
    """One input of a task: a file or directory (`path`) or a SuperNI task id (`superni`)."""

    path: Optional[str] = None
    superni: Optional[str] = None
    format: Literal["auto", "superni", "alpaca", "prompt-answer", "chat"] = "auto"
    cap: Optional[int] = Field(None, gt=0)
    split: Optional[Literal["train", "test", "validation"]] = Field(
        None, description="the role of this source's data; default: a benchmark task folder's file names say "
        "it (train.json; test.json; dev.json, eval.json, valid.json), any other file is training data")

    @model_validator(mode="after")
    def _one_input(self):
        if (self.path is None) == (self.superni is None):
            raise ValueError("a source needs exactly one of 'path' or 'superni'")
        return self


class TaskConfig(Strict):
    name: str
    sources: list[SourceConfig] = Field(min_length=1)
    cap: Optional[int] = Field(None, gt=0)
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
    format: Literal["auto", "superni", "alpaca", "prompt-answer", "chat"] = "auto"
    cap: Optional[int] = Field(None, gt=0, description="instances read per split file (a seeded sample)")


class SyntheticConfig(Strict):
    families: list[str] = ["sentiment", "entity-extraction", "list-ops", "date-format"]
    heldout_families: list[str] = ["yes-no-membership"]
    train_per_task: int = Field(64, gt=0)
    test_per_task: int = Field(16, gt=0)
    seed: int = 0


class SuperNIStreamConfig(Strict):
    """The SuperNI-16 stream of ../shared/data/superni/streams/superni16.json."""

    root: str = "../shared/data/superni"
    stream: str = "streams/superni16.json"
    order: str = "curriculum"
    categories: Optional[list[str]] = None  # a subset of the order, kept in order
    heldout_categories: list[str] = []
    per_source_cap: int = Field(40, gt=0)
    scorer: ScorerName = Field("rougeL", description=SCORER_HELP)


class DataConfig(Strict):
    kind: Literal["synthetic", "tasks", "superni", "benchmark"] = "synthetic"
    synthetic: SyntheticConfig = SyntheticConfig()
    superni: SuperNIStreamConfig = SuperNIStreamConfig()
    benchmark: Optional[BenchmarkConfig] = None
    superni_dir: Optional[str] = None  # where `superni:` task ids of sources are looked up
    tasks: list[TaskConfig] = []
    heldout: list[TaskConfig] = []
    test_size: Union[float, int] = 0.2  # fraction (<1) or count of each task's instances
    split_seed: int = 0
    split_by_run_seed: bool = Field(False, description="draw the train/test split (and every cap's sample) with "
                                    "the run's `seed` instead of `split_seed`, so that seeds measure data variance too")
    max_train_per_task: Optional[int] = Field(None, gt=0)
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
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(3e-4, gt=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: int = Field(256, gt=8)
    group_by_length: bool = True
    threads: Optional[int] = Field(None, gt=0)


class EvalConfig(Strict):
    batch_size: int = Field(16, gt=0)
    max_new_tokens: int = Field(32, gt=0)
    max_test_per_task: Optional[int] = Field(None, gt=0)
    max_prompt_length: Optional[int] = Field(
        None, gt=8, description="longest prompt shown at evaluation (tokens); default: the model's context window "
        "less the task's generation bound")
    scorers: list[ScorerName] = Field([], description="scores computed for every task besides ROUGE-L, exact "
                                      "match and its primary scorer")
    eval_unseen: bool = True  # also evaluate tasks not yet trained on (FWT needs it)
    ub: Literal["stage", "expert"] = "stage"


class InsCLConfig(Strict):
    encoder: Literal["sentence", "base-mean"] = "sentence"
    marginals: Literal["instances", "uniform"] = "instances"
    max_support: int = Field(512, gt=1)
    solver: Literal["emd", "sinkhorn"] = "emd"
    sinkhorn_reg: float = Field(0.05, gt=0)
    direction: Literal["dissimilar", "similar"] = "dissimilar"
    tagger: Literal["keyphrase", "llm"] = "keyphrase"
    tags_per_instruction: int = Field(5, gt=0)
    tagger_model: Optional[str] = None  # local transformers model dir for the llm tagger
    endpoint_url: Optional[str] = None  # OpenAI-compatible endpoint for the llm tagger
    endpoint_model: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"
    retries: int = Field(3, ge=0)
    dbscan_eps: float = Field(0.1, gt=0)
    dbscan_min_samples: int = Field(5, gt=0)
    prototype_clusters: Optional[int] = Field(None, gt=0)  # None: one cluster per replayed item
    keyphrase_max_ngram: int = Field(2, ge=1, le=4)  # longest candidate phrase of the keyphrase tagger
    endpoint_timeout: float = Field(60.0, gt=0)  # seconds per request to the tagger endpoint

    @model_validator(mode="after")
    def _llm_tagger_source(self):
        if self.tagger == "llm" and not self.tagger_model and not (self.endpoint_url and self.endpoint_model):
            raise ValueError("the llm tagger needs tagger_model, or endpoint_url and endpoint_model")
        return self


class KPIGConfig(Strict):
    extractor: Literal["heuristic", "llm"] = "heuristic"
    extractor_model: Optional[str] = None
    endpoint_url: Optional[str] = None
    endpoint_model: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"
    retries: int = Field(3, ge=0)  # invalid llm answers retried, then the heuristic spans are used (counted)
    llm_max_new_tokens: int = Field(256, gt=0)
    llm_timeout: float = Field(60.0, gt=0)  # seconds per endpoint request
    placeholder: str = "[...]"
    ig: Literal["nll", "entropy", "kl"] = "nll"
    probe: int = Field(32, gt=0)
    # Candidates ranked by IG inside a task (at least its quota): the first `pool` of the same seeded
    # order as the probe, so up to `probe` of them are scored already. pool = probe costs nothing
    # beyond the probe; every candidate more costs two forward passes per stage (was 128).
    pool: int = Field(32, gt=0)
    batch_size: int = Field(8, gt=0)  # instances per IG scoring batch (each is scored full and masked)
    quota: Literal["drop", "softmax"] = "drop"
    epsilon: float = Field(1e-3, gt=0)
    tau: float = Field(1.0, gt=0)
    objective: bool = True
    objective_on: Literal["all", "current", "replay"] = "all"
    lam: float = Field(0.1, ge=0, alias="lambda")
    margin: float = 1.0
    variants: int = Field(0, ge=0)  # instruction-diversity variants per instruction
    rewriter: Literal["template", "llm"] = "template"

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class ReplayConfig(Strict):
    strategy: str = "inscl"
    per_task: int = Field(16, ge=0)
    inscl: InsCLConfig = InsCLConfig()
    kpig: KPIGConfig = KPIGConfig()


class RunConfig(Strict):
    quiet: bool = False
    report_to: list[Literal["tensorboard", "wandb"]] = []
    cache_dir: Optional[str] = None
    save_model: Literal["last", "none"] = "last"


class Config(Strict):
    seed: int = 1
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    replay: ReplayConfig = ReplayConfig()
    run: RunConfig = RunConfig()

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


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
        cfg = Config.model_validate(raw, context={"stored": stored})
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
        full = Config.model_validate(cfg_dict, context={"stored": True}).to_dict()
    except ValidationError:  # a key this version no longer knows: it stays, so the configs differ there
        full = _merged(Config().to_dict(), cfg_dict)
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
