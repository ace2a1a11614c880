"""Few-shot evaluation: nearest class prototype over episodes, mean accuracy with a 95% interval,
and a paired test between two methods scored on the same episodes.

Classifier (Snell, Swersky, Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017,
arXiv:1703.05175, eq. 1-2): the prototype of a way is the mean of its K support embeddings
(E, N, D); a query is given the way whose prototype is nearest by squared Euclidean distance
(``"euclidean"``) or has the largest cosine similarity (``"cosine"``, to the mean of the raw
support embeddings). Ties go to the lower way index. Accuracy of an episode = correct queries /
(N * Q).

Summary: mean accuracy over the E episodes and the half-width of its 95% interval
1.96 * std / sqrt(E), std without Bessel's correction (``np.std``), as in the evaluation scripts
of MetaOptNet (Lee et al. 2019) and the ProtoNet follow-ups whose numbers we compare with.

Everything runs from cached embeddings, vectorised over chunks of episodes (batched matrix
products), so 10,000 episodes take seconds on a CPU; :func:`episode_accuracies_loop` is the
plain per-episode reference used in tests and benchmarks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor

from cirbench.data.episodes import Episodes
from cirbench.eval.distances import Distance, working_precision

CHUNK_FLOATS = 1 << 20  # gathered floats per chunk: 4 MiB in float32 stays in cache (fastest here)


def metric_name(n_way: int, k_shot: int) -> str:
    """``acc_5w1s`` for 5-way 1-shot."""
    return f"acc_{n_way}w{k_shot}s"


def prototype_scores(support: Tensor, query: Tensor, distance: Distance) -> Tensor:
    """support (E, N, K, D), query (E, M, D) -> scores (E, M, N), higher = nearer."""
    protos = support.mean(dim=2)
    if distance == "cosine":
        return F.normalize(query, dim=-1) @ F.normalize(protos, dim=-1).transpose(1, 2)
    # -||q - p||^2 up to the per-query constant ||q||^2, which does not change the arg max.
    return 2.0 * query @ protos.transpose(1, 2) - protos.pow(2).sum(-1).unsqueeze(1)


def episode_accuracies(
    features: Tensor, episodes: Episodes, distance: Distance = "euclidean"
) -> np.ndarray:
    """Accuracy of every episode (E,) from cached ``features`` (num images, D)."""
    feats = working_precision(features)
    n_eps, n_way, k_shot = episodes.support.shape
    n_query = episodes.query.shape[2]
    per_episode = n_way * (k_shot + n_query) * feats.shape[1]
    chunk = max(1, CHUNK_FLOATS // per_episode)
    truth = torch.arange(n_way, device=feats.device).repeat_interleave(n_query)
    support_idx = torch.from_numpy(episodes.support).to(feats.device)
    query_idx = torch.from_numpy(episodes.query).to(feats.device).reshape(n_eps, -1)
    out = []
    for start in range(0, n_eps, chunk):
        # F.embedding: a row gather, faster than advanced indexing on CPU (design-measurements).
        sup = F.embedding(support_idx[start : start + chunk], feats)
        qry = F.embedding(query_idx[start : start + chunk], feats)
        pred = prototype_scores(sup, qry, distance).argmax(dim=-1)
        out.append((pred == truth).float().mean(dim=1))
    return torch.cat(out).cpu().numpy().astype(np.float64)


def episode_accuracies_loop(
    features: Tensor, episodes: Episodes, distance: Distance = "euclidean"
) -> np.ndarray:
    """The same as :func:`episode_accuracies`, one episode at a time (reference, benchmarks)."""
    feats = working_precision(features)
    accs = []
    for e in range(episodes.n_episodes):
        sup = feats[torch.from_numpy(episodes.support[e])]  # (N, K, D)
        qry = feats[torch.from_numpy(episodes.query[e].reshape(-1))]  # (N*Q, D)
        protos = sup.mean(dim=1)
        if distance == "cosine":
            scores = F.normalize(qry, dim=1) @ F.normalize(protos, dim=1).T
        else:
            scores = -torch.cdist(qry, protos).pow(2)
        truth = torch.arange(len(protos)).repeat_interleave(episodes.query.shape[2])
        accs.append(float((scores.argmax(dim=1) == truth).float().mean()))
    return np.array(accs)


def mean_ci95(accuracies: np.ndarray) -> tuple[float, float]:
    """(mean, 95% half-width 1.96 * std / sqrt(E)) of per-episode accuracies."""
    acc = np.asarray(accuracies, dtype=np.float64)
    if acc.size == 0:
        raise ValueError("no episode accuracies")
    return float(acc.mean()), float(1.96 * acc.std() / math.sqrt(acc.size))


def paired_test(a: Any, b: Any) -> dict[str, float]:
    """Compare two methods' per-episode accuracies on the same episodes (a - b).

    Returns n, mean_a, mean_b, mean_diff, its 95% interval ``ci95_low``/``ci95_high`` (Student t
    with n - 1 degrees of freedom, so it excludes 0 exactly when the paired t-test's p < 0.05),
    the paired t-test (``scipy.stats.ttest_rel``: ``t``, ``t_pvalue``) and the Wilcoxon
    signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped: ``wilcoxon``,
    ``wilcoxon_pvalue``; p = 1 when every difference is zero). Raises ValueError when the
    sequences differ in length (not the same episodes) or have fewer than 2 entries.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(
            f"paired_test needs two equally long 1-d sequences of >= 2 per-episode accuracies "
            f"(the same episodes), got shapes {x.shape} and {y.shape}"
        )
    diff = x - y
    mean, sem = float(diff.mean()), float(stats.sem(diff))
    half = float(stats.t.ppf(0.975, diff.size - 1)) * sem
    if np.all(diff == 0):
        t_stat, t_p, w_stat, w_p = 0.0, 1.0, 0.0, 1.0
    else:
        t_res = stats.ttest_rel(x, y)
        w_res = stats.wilcoxon(x, y, zero_method="wilcox")
        t_stat, t_p = float(t_res.statistic), float(t_res.pvalue)
        w_stat, w_p = float(w_res.statistic), float(w_res.pvalue)
    return {
        "n": float(diff.size),
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "mean_diff": mean,
        "ci95_low": mean - half,
        "ci95_high": mean + half,
        "t": t_stat,
        "t_pvalue": t_p,
        "wilcoxon": w_stat,
        "wilcoxon_pvalue": w_p,
    }
