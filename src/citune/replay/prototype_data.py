"""Prototype replay over instances (METHODS §3.7): equal quotas; k-means over each old task's instance
embeddings; the instances nearest the centroids are replayed, one per cluster per round."""
from __future__ import annotations

import warnings

import numpy as np

from citune.types import Instance, Task
from citune.replay.base import ReplayRecord, StageContext, register
from citune.models.embeddings import embed_texts
from citune.replay.per_task import EqualQuotaReplay


def prompt_text(x: Instance) -> str:
    return f"{x.instruction}\n\n{x.input}" if x.input else x.instruction


def prototype_order(points: np.ndarray, k: int, seed: int) -> list[int]:
    """Every point, in replay order: k-means into k clusters, then rounds over the clusters (largest first),
    each round taking every cluster's next-nearest member to its centroid. The first round holds the
    k prototypes."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    m = len(points)
    k = max(1, min(int(k), m))
    if k == m:
        return list(range(m))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate points: fewer distinct clusters
        km = KMeans(k, n_init=3, random_state=seed).fit(points)
    dist = np.linalg.norm(points - km.cluster_centers_[km.labels_], axis=1)
    clusters = [np.flatnonzero(km.labels_ == c) for c in range(k)]
    clusters = [c[np.lexsort((c, dist[c]))] for c in clusters if len(c)]
    clusters.sort(key=lambda c: (-len(c), int(c[0])))
    return [int(c[r]) for r in range(max(map(len, clusters))) for c in clusters if r < len(c)]


def seed_of(ctx: StageContext, *keys: object) -> int:
    return int(ctx.rng(*keys).integers(2**31))


@register("prototype-data")
class PrototypeData(EqualQuotaReplay):
    def pick(self, ctx: StageContext, task: Task, quota: int, shared=None) -> list[ReplayRecord]:
        ins = self.cfg.replay.inscl
        points = embed_texts([prompt_text(x) for x in task.train], ctx.cache_dir, ins.encoder, self.cfg.model,
                             ctx.model)
        order = prototype_order(points, ins.prototype_clusters or quota, seed_of(ctx, self.name, task.name))
        return [ReplayRecord(task.train[i], {"quota": quota, "prototype_rank": r}) for r, i in enumerate(order[:quota])]
