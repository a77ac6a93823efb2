#!/usr/bin/env python3
"""scikit-learn's t-SNE and PCA as references for `latent-lab project`.

  python3 bench/tsne_reference.py circle
      The unit test's known embedding (120 points on a circle in 5-D, perplexity 10):
      prints scikit-learn's KL divergence, which `src/explore/tsne.rs` must match or beat.
  python3 bench/tsne_reference.py latents.csv
      Encoded means written by `latent-lab project --latents-out latents.csv`: 5-NN label
      accuracy (5-fold) of the best raw pair, PCA and t-SNE, and t-SNE's time.

Install: python3 -m venv /tmp/skenv && /tmp/skenv/bin/pip install scikit-learn numpy
"""
import itertools
import sys
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.manifold._t_sne import _joint_probabilities_nn
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors


def knn5(points, labels):
    clf = KNeighborsClassifier(n_neighbors=5)
    return cross_val_score(clf, points, labels, cv=StratifiedKFold(5)).mean()


def circle():
    n = 120
    t = np.arange(n, dtype=np.float32) / n * np.float32(2 * np.pi)
    x = np.stack([10 * np.cos(t), 10 * np.sin(t), np.zeros(n), np.ones(n), -np.ones(n)], 1)
    x = x.astype(np.float64)
    # The sparse affinities of Barnes-Hut (and of src/explore/tsne.rs), to judge every
    # embedding by the exact KL on the same P.
    graph = NearestNeighbors(n_neighbors=31).fit(x).kneighbors_graph(mode="distance")
    graph.data **= 2
    p = _joint_probabilities_nn(graph, 10, 0).toarray()

    def exact_kl(y):
        d = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        w = 1 / (1 + d)
        np.fill_diagonal(w, 0)
        q = w / w.sum()
        m = p > 0
        return (p[m] * np.log(p[m] / q[m])).sum()

    for method in ["barnes_hut", "exact"]:
        for seed in range(3):
            ts = TSNE(perplexity=10, random_state=seed, method=method, init="pca")
            y = ts.fit_transform(x).astype(np.float64)
            print(f"circle {method} seed {seed}: kl_divergence_ {ts.kl_divergence_:.4f}, "
                  f"exact KL on the sparse P {exact_kl(y):.4f}")


def latents(path):
    rows = np.loadtxt(path, delimiter=",", dtype=np.float64)
    labels, z = rows[:, 0].astype(int), rows[:, 1:]
    print(f"{len(z)} points of {z.shape[1]} latents")
    best = max(
        ((knn5(z[:, [a, b]], labels), (a, b)) for a, b in itertools.combinations(range(z.shape[1]), 2))
    )
    print(f"best raw pair z{best[1][0]}, z{best[1][1]}: knn5 {best[0]:.3f}")
    print(f"pca: knn5 {knn5(PCA(2).fit_transform(z), labels):.3f}")
    for seed in range(3):
        t = time.perf_counter()
        ts = TSNE(perplexity=30, random_state=seed)
        y = ts.fit_transform(z)
        secs = time.perf_counter() - t
        print(f"tsne seed {seed}: knn5 {knn5(y, labels):.3f}, {secs:.2f} s, kl {ts.kl_divergence_:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    circle() if sys.argv[1] == "circle" else latents(sys.argv[1])
