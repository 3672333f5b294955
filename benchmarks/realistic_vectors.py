"""Synthetic catalogue vectors with the statistics of real embeddings, for index benchmarks.

    python benchmarks/realistic_vectors.py [--index outputs/dev-fused-index]

Real embeddings are harder for approximate indexes than a few tight clusters: they spread
over many directions and a product's nearest neighbours are barely nearer than the rest.
Three statistics say how hard a set is (Euclidean distances of unit vectors, each point
against the others):

- intrinsic dimension: the TwoNN estimate (Facco et al., 2017) from the ratio of each point's
  second to first neighbour distance, and the principal components holding 90% of the variance;
- relative contrast: the mean distance to the others over the distance to the nearest;
- d10 / d1: the 10th neighbour's distance over the 1st (median over points).

:class:`VectorModel` is fitted to an index's vectors: k-means clusters, each with its own
main directions (its principal components) and their spreads, and what they leave as
isotropic noise. New vectors are a cluster's mean plus draws along its directions plus that
noise times a factor chosen by bisection so that a sample as large as the real set has the
real d10 / d1; the other statistics are reported beside the real ones, not fitted. Running this file writes the
real and fitted statistics to benchmarks/results/realistic_vectors.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from fashion_search.io import write_results

ROOT = Path(__file__).resolve().parent
DEFAULT_INDEX = ROOT.parent / "outputs" / "dev-fused-index"
CLUSTERS = 64
LOCAL_COMPONENTS = 16  # directions each cluster spreads along (the rest of its spread is noise)


def index_vectors(folder: str | Path) -> np.ndarray:
    """The live vectors of an index folder (read straight from its files)."""
    from fashion_search.params import IndexParams
    from fashion_search.search.index.store import open_index

    index = open_index(folder, IndexParams(), in_memory=True)
    return np.asarray(index.vectors.vectors, np.float32)[index.live]


def statistics(vectors: np.ndarray, sample: int = 2_000, seed: int = 0) -> dict:
    """Intrinsic dimension, relative contrast and d10 / d1 of a set (``sample`` points as queries)."""
    rng = np.random.default_rng(seed)
    queries = vectors[rng.choice(len(vectors), min(sample, len(vectors)), replace=False)]
    exact = faiss.IndexFlatL2(vectors.shape[1])
    exact.add(vectors)
    squared, _ = exact.search(queries, 11)
    near = np.sqrt(np.maximum(squared[:, 1:], 0))  # the query itself comes first
    near = np.maximum(near, 1e-9)
    others = vectors[rng.choice(len(vectors), min(sample, len(vectors)), replace=False)]
    mean_distance = np.sqrt(np.maximum(2 - 2 * queries @ others.T, 0)).mean(axis=1)  # unit vectors
    centred = vectors - vectors.mean(axis=0)
    variance = np.linalg.svd(centred[rng.choice(len(vectors), min(5_000, len(vectors)), replace=False)],
                             compute_uv=False) ** 2
    return {"points": len(vectors), "dim": int(vectors.shape[1]),
            "twonn_dimension": round(float(len(near) / np.sum(np.log(near[:, 1] / near[:, 0]))), 1),
            "components_for_90pct": int(np.searchsorted(np.cumsum(variance) / variance.sum(), 0.9) + 1),
            "relative_contrast": round(float(np.median(mean_distance / near[:, 0])), 3),
            "d10_over_d1": round(float(np.median(near[:, 9] / near[:, 0])), 3)}


@dataclass
class Cluster:
    """One cluster: its mean, its main directions and their spreads, and the rest's spread."""

    mean: np.ndarray        # (dim,)
    directions: np.ndarray  # (LOCAL_COMPONENTS, dim), orthonormal rows
    spreads: np.ndarray     # (LOCAL_COMPONENTS,): standard deviation along each direction
    residual: float         # standard deviation of what the directions leave, per dimension


@dataclass
class VectorModel:
    """Clusters, each spread along a few directions of its own, plus isotropic noise."""

    clusters: list[Cluster]
    weights: np.ndarray  # (clusters,): share of the points
    noise: float = 1.0   # multiplies each cluster's residual spread (fitted to match d10 / d1)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` unit vectors drawn from the model."""
        rng = np.random.default_rng(seed)
        which = rng.choice(len(self.weights), n, p=self.weights)
        out = np.empty((n, len(self.clusters[0].mean)), np.float32)
        for c in np.unique(which):
            rows, cluster = np.flatnonzero(which == c), self.clusters[c]
            along = (rng.normal(size=(len(rows), len(cluster.spreads))) * cluster.spreads) @ cluster.directions
            noise = self.noise * cluster.residual * rng.normal(size=(len(rows), len(cluster.mean)))
            out[rows] = cluster.mean + along + noise
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _cluster(points: np.ndarray) -> Cluster:
    mean = points.mean(axis=0)
    _, singular, rows = np.linalg.svd(points - mean, full_matrices=False)
    directions = rows[:LOCAL_COMPONENTS]
    spreads = singular[:len(directions)] / np.sqrt(len(points))
    rest = (points - mean) - ((points - mean) @ directions.T) @ directions
    return Cluster(mean, directions, spreads, float(rest.std()))


def fit(vectors: np.ndarray, seed: int = 0) -> VectorModel:
    """A :class:`VectorModel` of ``vectors``, its noise chosen so that a sample of the same size
    has their d10 / d1."""
    kmeans = faiss.Kmeans(vectors.shape[1], CLUSTERS, niter=25, seed=seed)
    kmeans.train(vectors)
    assign = kmeans.index.search(vectors, 1)[1][:, 0]
    clusters = [_cluster(vectors[assign == c] if np.sum(assign == c) > 1 else vectors) for c in range(CLUSTERS)]
    model = VectorModel(clusters, np.bincount(assign, minlength=CLUSTERS) / len(vectors))
    target = statistics(vectors)["d10_over_d1"]
    low, high = 0.0, 2.0
    for _ in range(10):  # more noise brings the 10th neighbour nearer to the 1st: d10 / d1 falls
        model.noise = (low + high) / 2
        if statistics(model.sample(len(vectors), seed + 1))["d10_over_d1"] > target:
            low = model.noise
        else:
            high = model.noise
    return model


def earlier_mixture(n: int, dim: int, clusters: int = 2_000, subspace: int = 32) -> np.ndarray:
    """The vectors index benchmarks used before (kept to show the difference): ``clusters``
    centres in a ``subspace``-d subspace, each with its own spread, small noise everywhere."""
    model = np.random.default_rng(0)
    basis = np.linalg.qr(model.normal(size=(dim, subspace)))[0].T
    centres, spread = model.normal(size=(clusters, subspace)), model.uniform(0.15, 0.45, size=(clusters, subspace))
    rng = np.random.default_rng(n)
    which = rng.integers(0, clusters, n)
    points = (centres[which] + spread[which] * rng.normal(size=(n, subspace))) @ basis + 0.03 * rng.normal(size=(n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=str(DEFAULT_INDEX))
    parser.add_argument("--out", default=str(ROOT / "results" / "realistic_vectors"))
    args = parser.parse_args()
    real = index_vectors(args.index)
    model = fit(real)
    rows = {"real (dev photos)": statistics(real),
            "fitted model, same size": statistics(model.sample(len(real), 7)),
            "fitted model, 100,000": statistics(model.sample(100_000, 8)),
            "earlier benchmark mixture, same size": statistics(earlier_mixture(len(real), real.shape[1])),
            "earlier benchmark mixture, 100,000": statistics(earlier_mixture(100_000, real.shape[1]))}
    lines = ["# Realistic synthetic vectors", "",
             f"`python benchmarks/realistic_vectors.py --index {args.index}`: statistics of the index's "
             f"{len(real):,} vectors and of vectors drawn from the model fitted to them ({CLUSTERS} clusters, "
             f"each spread along {LOCAL_COMPONENTS} directions of its own, noise factor {model.noise:.3f}).", "",
             "| vectors | points | dim | TwoNN dimension | components for 90% | relative contrast | d10 / d1 |",
             "|---|---|---|---|---|---|---|"]
    for name, s in rows.items():
        lines.append(f"| {name} | {s['points']:,} | {s['dim']} | {s['twonn_dimension']} | {s['components_for_90pct']} | "
                     f"{s['relative_contrast']} | {s['d10_over_d1']} |")
    write_results(args.out, {"index": args.index, "noise": model.noise, "local_components": LOCAL_COMPONENTS,
                             "clusters": CLUSTERS, "statistics": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
