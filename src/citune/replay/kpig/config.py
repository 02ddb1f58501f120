"""The `replay.kpig` section: KPIG's settings (METHODS.md §4)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import ConfigDict, Field

from citune.config import Strict


class KPIGConfig(Strict):
    """KPIG: key parts, information-gain-driven replay and the refined objective (a reconstruction)."""

    extractor: Literal["heuristic", "llm"] = Field("heuristic", description="key-part extraction: the offline "
                                                   "heuristic, or an LLM")
    extractor_model: Optional[str] = Field(None, description="local transformers model directory for the llm "
                                           "extractor and rewriter")
    endpoint_url: Optional[str] = Field(None, description="OpenAI-compatible endpoint for the llm extractor and "
                                        "rewriter (a server root gets /v1/chat/completions)")
    endpoint_model: Optional[str] = Field(None, description="model name sent to the endpoint")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the endpoint's key "
                             "(never written or logged)")
    retries: int = Field(3, ge=0, description="invalid llm answers retried, then the heuristic spans are used "
                         "(counted)")
    llm_max_new_tokens: int = Field(256, gt=0, description="longest llm answer (tokens)")
    llm_timeout: float = Field(60.0, gt=0, description="seconds per endpoint request")
    placeholder: str = Field("[...]", description="what replaces a key part in the masked instruction")
    ig: Literal["nll", "entropy", "kl"] = Field("nll", description="information gain measured as the drop in "
                                                "response NLL, in entropy, or as a KL divergence")
    probe: int = Field(32, gt=0, description="instances per task scored for the task's mean IG")
    # Every candidate costs two forward passes per stage (those of the probe are scored already).
    pool: int = Field(32, gt=0, description="candidates ranked by IG inside a task, drawn afresh at every stage")
    pool_factor: float = Field(2.0, gt=1, description="the pool holds at least pool_factor x the task's quota "
                               "(all it stores when that is less), so that IG always chooses")
    batch_size: int = Field(8, gt=0, description="instances per IG scoring batch (each is scored full and masked)")
    quota: Literal["drop", "softmax"] = Field("drop", description="task quotas proportional to max(epsilon, IG "
                                              "when learned - IG now), or to exp(-IG now / tau)")
    epsilon: float = Field(1e-3, gt=0, description="floor of a task's IG drop in the drop quotas")
    tau: float = Field(1.0, gt=0, description="temperature of the softmax quotas")
    objective: bool = Field(True, description="add the IG hinge to the training loss")
    objective_on: Literal["all", "current", "replay"] = Field("all", description="instances the hinge applies to")
    lam: float = Field(0.1, ge=0, alias="lambda", description="weight of the IG hinge")
    margin: float = Field(1.0, description="hinge margin m of the objective lambda * max(0, m - IG)")
    variants: int = Field(0, ge=0, description="instruction-diversity variants per instruction")
    rewriter: Literal["template", "llm"] = Field("template", description="how variants are written: templates, "
                                                 "or an LLM")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)
