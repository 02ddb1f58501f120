"""The `replay.inscl` section: InsCL's settings (METHODS.md §3). The prototype baselines of InsCL's
paper read `encoder` and `prototype_clusters` too, so that they compare with InsCL on the same vectors."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from citune.config import Strict


class InsCLConfig(Strict):
    """InsCL: Wasserstein-driven replay quotas, replay chosen by InsInfo."""

    encoder: Literal["sentence", "base-mean"] = Field(
        "sentence", description="instruction embeddings: the embedded sentence encoder, or the base model's mean "
        "hidden state")
    marginals: Literal["instances", "uniform"] = Field(
        "instances", description="mass of each unique instruction: its instance count, or uniform")
    max_support: int = Field(512, gt=1, description="unique instructions per task above which the support is "
                             "compressed by weighted k-means")
    solver: Literal["emd", "sinkhorn"] = Field("emd", description="optimal transport: exact (POT emd) or "
                                               "entropic Sinkhorn")
    sinkhorn_reg: float = Field(0.05, gt=0, description="entropic regularisation of the Sinkhorn solver")
    direction: Literal["dissimilar", "similar"] = Field(
        "dissimilar", description="which earlier tasks get more replay: those farther from the current task "
        "(InsCL) or those closer")
    tagger: Literal["keyphrase", "llm"] = Field("keyphrase", description="instruction tags for InsInfo: the "
                                                "offline keyphrase tagger, or an LLM")
    tags_per_instruction: int = Field(5, gt=0, description="most tags per instruction (the keyphrase tagger keeps "
                                      "fewer when fewer phrases are relevant enough)")
    keyphrase_threshold: float = Field(0.5, ge=-1, le=1, description="keyphrase tagger: a phrase is a tag only when "
                                       "its cosine similarity to the whole instruction is at least this")
    keyphrase_diversity: float = Field(0.3, ge=0, le=1, description="keyphrase tagger: the MMR weight of novelty "
                                       "against relevance when ordering the phrases (0: by relevance alone)")
    tagger_model: Optional[str] = Field(None, description="local transformers model directory for the llm tagger")
    endpoint_url: Optional[str] = Field(None, description="OpenAI-compatible endpoint for the llm tagger (a "
                                        "server root gets /v1/chat/completions)")
    endpoint_model: Optional[str] = Field(None, description="model name sent to the endpoint")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the endpoint's key "
                             "(never written or logged)")
    retries: int = Field(3, ge=0, description="retries of a failed or invalid tagger answer")
    dbscan_eps: float = Field(0.1, gt=0, description="DBSCAN radius (cosine) that merges near-synonymous tags")
    dbscan_min_samples: int = Field(5, gt=0, description="DBSCAN core-point size of the tag merge")
    prototype_clusters: Optional[int] = Field(
        None, gt=0, description="k-means clusters of the prototype baselines; default: one per replayed item")
    keyphrase_max_ngram: int = Field(2, ge=1, le=4, description="longest candidate phrase of the keyphrase tagger "
                                     "(words)")
    endpoint_timeout: float = Field(60.0, gt=0, description="seconds per request to the tagger endpoint")

    @model_validator(mode="after")
    def _llm_tagger_source(self):
        if self.tagger == "llm" and not self.tagger_model and not (self.endpoint_url and self.endpoint_model):
            raise ValueError("the llm tagger needs tagger_model, or endpoint_url and endpoint_model")
        return self
