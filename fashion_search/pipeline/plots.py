"""Figures of the pipeline's stages (01 catalogue, 02 training, 03 features, 05 results); each
function returns a matplotlib Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fashion_search.data.catalog import Catalog
from fashion_search.figures import frame_tile, show_image



def plot_catalog_samples(catalog: Catalog, per_class: int = 8, seed: int = 0, max_classes: int = 12) -> Figure:
    """A grid with ``per_class`` random images of each category, one row per category (the
    ``max_classes`` largest categories)."""
    rng = np.random.default_rng(seed)
    largest = set(catalog.items[catalog.label_column].value_counts().index[:max_classes])
    names = [name for name in catalog.class_names if name in largest]
    fig, axes = plt.subplots(len(names), per_class, figsize=(per_class * 0.9, len(names) * 0.95), squeeze=False)
    for row, name in enumerate(names):
        rows = np.flatnonzero(catalog.items[catalog.label_column].to_numpy() == name)
        picks = rng.choice(rows, size=min(per_class, len(rows)), replace=False)
        for col, ax in enumerate(axes[row]):
            if col < len(picks):
                show_image(ax, catalog.images[picks[col]])
            else:
                ax.axis("off")
        axes[row][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("Sample images per category")
    return fig


def plot_split_counts(catalog: Catalog, max_classes: int = 30) -> Figure:
    """Items per category and split, as stacked horizontal bars (the ``max_classes`` largest)."""
    counts = catalog.items.groupby([catalog.label_column, "split"]).size().unstack(fill_value=0)
    counts = counts.loc[counts.sum(axis=1).sort_values(ascending=False).index[:max_classes]][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(counts) + 1))
    counts.plot.barh(ax=ax, stacked=True)
    ax.set_xlabel("items")
    ax.set_ylabel("")
    ax.set_title("Items per category and split")
    return fig


def plot_learning_curves(histories: dict[str, pd.DataFrame], monitor: str) -> Figure:
    """Training loss and validation retrieval (``monitor``) per epoch, one column per model."""
    fig, axes = plt.subplots(2, max(len(histories), 1), figsize=(4.2 * max(len(histories), 1), 6), squeeze=False)
    for col, (name, history) in enumerate(histories.items()):
        epochs = history["epoch"] + 1
        for row, (metric, label) in enumerate((("loss", "training loss"), (monitor, f"validation {monitor}"))):
            ax = axes[row][col]
            ax.plot(epochs, history[metric], "o-")
            unfrozen = history.loc[history["phase"] == "unfrozen", "epoch"]
            if len(unfrozen):
                ax.axvline(unfrozen.iloc[0] + 0.5, color="grey", ls="--", lw=1, label="backbone unfrozen")
                ax.legend(fontsize=7)
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.set_title(name if row == 0 else "")
    fig.tight_layout()
    return fig


def plot_query_results(test: Catalog, neighbours: np.ndarray, queries: list[int], top_k: int,
                       title: str = "") -> Figure:
    """Each row: a query, then its ``top_k`` results; green frames are relevant, red are not."""
    labels = test.items[test.label_column].to_numpy()
    fig, axes = plt.subplots(len(queries), top_k + 1, figsize=(1.25 * (top_k + 1), 1.55 * len(queries)),
                             squeeze=False)
    for row, query in enumerate(queries):
        show_image(axes[row][0], test.images[query])
        axes[row][0].set_title(f"query\n{labels[query]}", fontsize=7, fontweight="bold")
        for rank, item in enumerate(neighbours[query, :top_k], start=1):
            ax = axes[row][rank]
            show_image(ax, test.images[item])
            colour = frame_tile(ax, labels[item] == labels[query])
            ax.set_title(f"{rank}. {labels[item]}", fontsize=6, color=colour)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_map_bars(summary: pd.DataFrame, relevance: str, column: str = "map_report",
                  distance: str = "euclidean") -> Figure:
    """mAP@k per model (backbone and recipe), grouped by k."""
    rows = summary[(summary["distance"] == distance) & (summary["relevance"] == relevance)]
    table = rows.pivot(index="k", columns="model", values=column)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    table.plot.bar(ax=ax, rot=0)
    ax.set_xticklabels([f"Top {k}" for k in table.index])
    ax.set_xlabel("")
    ax.set_ylabel(column.replace("_", " "))
    ax.set_ylim(0, 1)
    ax.set_title(f"{column.replace('_', ' ')}, relevant = same {relevance} ({distance} distance)", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_feature_projection(features: dict[str, np.ndarray], labels: np.ndarray) -> Figure:
    """Each backbone's features projected on their first two principal components, coloured by category."""
    fig, axes = plt.subplots(1, max(len(features), 1), figsize=(4.3 * max(len(features), 1), 4), squeeze=False)
    categories = list(dict.fromkeys(labels))
    for ax, (name, matrix) in zip(axes[0], features.items()):
        centred = matrix - matrix.mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        points = centred @ components[:2].T
        for category in categories:
            mask = labels == category
            ax.scatter(points[mask, 0], points[mask, 1], s=6, label=category)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(categories) <= 15:  # beyond that a legend hides more than it tells
        axes[0][-1].legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle("Test features, first two principal components")
    fig.tight_layout()
    return fig
