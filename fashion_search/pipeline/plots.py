"""Figures of the pipeline's stages (01 catalogue, 02 training, 03 features, 05 results); each
function returns a matplotlib Figure."""
from __future__ import annotations

import textwrap

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
    # "compressed": square tiles packed together, the title just above them (no blank band between)
    fig, axes = plt.subplots(len(names), per_class, figsize=(per_class * 0.9, len(names) * 0.95 + 0.4),
                             squeeze=False, layout="compressed")
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
    counts = counts[[s for s in ("train", "validation", "test") if s in counts] +
                    [s for s in counts.columns if s not in ("train", "validation", "test")]]
    fig, ax = plt.subplots(figsize=(7.5, 0.3 * len(counts) + 1.2))
    counts.plot.barh(ax=ax, stacked=True)
    ax.set_xlabel("items")
    ax.set_ylabel("")
    ax.set_title("Items per category and split")
    ax.legend(title="split", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the bars
    fig.tight_layout()
    return fig


def metric_label(column: str) -> str:
    """A human name for a metrics column: ``val_map_at_10`` → ``mAP@10``, ``map_report`` → ``mAP@k``."""
    if column.startswith("val_map_at_"):
        return f"mAP@{column.removeprefix('val_map_at_')}"
    return {"map_report": "mAP@k (the report's definition)", "map_standard": "mAP@k (standard definition)",
            "precision": "precision@k", "recall": "recall@k"}.get(column, column.replace("_", " "))


def plot_learning_curves(histories: dict[str, pd.DataFrame], monitor: str) -> Figure:
    """Training loss and validation retrieval (``monitor``) per epoch, one column per model; the
    fused recipe's two heads are two lines (each head's validation by its own column)."""
    fig, axes = plt.subplots(2, max(len(histories), 1), figsize=(4.2 * max(len(histories), 1), 6), squeeze=False)
    for col, (name, history) in enumerate(histories.items()):
        heads = list(history.groupby("head", sort=False)) if "head" in history else [(None, history)]
        phases = history["phase"] if "phase" in history else pd.Series("head", index=history.index)
        rows = (("loss", "training loss"), (monitor, f"validation {metric_label(monitor)}"))
        for row, (metric, label) in enumerate(rows):
            ax = axes[row][col]
            for head, part in heads:
                ax.plot(part["epoch"] + 1, part[metric], "o-", ms=3, label=f"{head} head" if head else None)
            unfrozen = history.loc[phases == "unfrozen", "epoch"]
            if len(unfrozen):
                ax.axvline(unfrozen.iloc[0] + 0.5, color="grey", ls="--", lw=1, label="backbone unfrozen")
            if len(unfrozen) or len(heads) > 1:
                ax.legend(fontsize=7, loc="best" if row else "upper right")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.set_title(name if row == 0 else "")
        frozen = history.loc[phases == "frozen", monitor]
        if len(frozen) > 1 and np.ptp(frozen.to_numpy()) < 1e-6:
            axes[1][col].text(0.03, 0.95, "flat while the backbone is frozen:\nthese features come from it,\n"
                              "only the classifier head trains", transform=axes[1][col].transAxes,
                              fontsize=7, va="top", color="dimgrey")
    fig.tight_layout()
    return fig


def plot_colour_weights(tables: dict[str, tuple[pd.DataFrame, float]]) -> Figure:
    """Validation mAP per colour weight of each fused model (one line per relevance and
    definition, the mean dashed), the chosen weight marked."""
    fig, axes = plt.subplots(1, max(len(tables), 1), figsize=(5.2 * max(len(tables), 1), 3.8), squeeze=False)
    for ax, (name, (table, chosen)) in zip(axes[0], tables.items()):
        for column in [c for c in table.columns if c not in ("colour_weight", "mean")]:
            ax.plot(table["colour_weight"], table[column], "o-", ms=3, label=column)
        ax.plot(table["colour_weight"], table["mean"], "k--", lw=1, label="mean (what chooses)")
        ax.axvline(chosen, color="grey", lw=1)
        ax.annotate(f"chosen: {chosen:g}", (chosen, ax.get_ylim()[1]), xytext=(3, -12), textcoords="offset points",
                    fontsize=7, color="dimgrey")
        ax.set_xlabel("colour weight w in [type, w · colour]")
        ax.set_ylabel("validation mAP@k")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return fig


def plot_query_results(test: Catalog, neighbours: np.ndarray, queries: list[int], top_k: int,
                       title: str = "", row_notes: list[str] | None = None, gallery: Catalog | None = None) -> Figure:
    """Each row: a query of ``test``, then its ``top_k`` results, rows of ``gallery`` (default:
    ``test``); green frames are relevant, red are not. ``row_notes`` adds a line under each query's label."""
    gallery = test if gallery is None else gallery
    labels, gallery_labels = test.items[test.label_column].to_numpy(), gallery.items[gallery.label_column].to_numpy()
    # 1.15 in a tile: eleven tiles fit a report read at 1,280 px without scaling the 9 pt captions down
    row_height = 2.35 if row_notes else 1.5  # room for the note's lines above the row
    fig, axes = plt.subplots(len(queries), top_k + 1, figsize=(1.15 * (top_k + 1), row_height * len(queries)),
                             squeeze=False)
    for row, query in enumerate(queries):
        show_image(axes[row][0], test.images[query])
        note = f"\n{textwrap.fill(row_notes[row], 14)}" if row_notes else ""  # within the query's own tile
        axes[row][0].set_title(f"query\n{labels[query]}{note}", fontsize=9, fontweight="bold")
        for rank, item in enumerate(neighbours[query, :top_k], start=1):
            ax = axes[row][rank]
            show_image(ax, gallery.images[item])
            colour = frame_tile(ax, gallery_labels[item] == labels[query])
            ax.set_title(f"{rank}. {gallery_labels[item]}", fontsize=9, color=colour)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


CONFUSION_TILE, CONFUSION_ROW, CONFUSION_PAIR, CONFUSION_LEFT, CONFUSION_TOP = 0.95, 1.6, 2.5, 1.45, 0.55  # inches


def plot_confusions(test: Catalog, tables: dict[str, pd.DataFrame], k: int, n: int = 4,
                    gallery: Catalog | None = None) -> Figure:
    """One row per model (``tables``: its :func:`~.evaluate.confusions`): its ``n`` most frequent
    confusions side by side, each a query of ``test`` and a result of another label it returned (a
    row of ``gallery``, default ``test``), captioned with the share of that label's top-``k`` slots."""
    gallery = test if gallery is None else gallery
    tables = {name: table.head(n) for name, table in tables.items()}
    columns = max([1, *(len(t) for t in tables.values())])
    width, height = CONFUSION_LEFT + CONFUSION_PAIR * columns, CONFUSION_TOP + CONFUSION_ROW * max(len(tables), 1)
    fig = plt.figure(figsize=(width, height))

    def tile(row: int, col: int, second: bool) -> plt.Axes:  # placed in inches, then as figure fractions
        left = CONFUSION_LEFT + CONFUSION_PAIR * col + (CONFUSION_TILE + 0.12) * second
        bottom = height - CONFUSION_TOP - CONFUSION_ROW * row - 0.3 - CONFUSION_TILE
        return fig.add_axes((left / width, bottom / height, CONFUSION_TILE / width, CONFUSION_TILE / height))

    for row, (name, table) in enumerate(tables.items()):
        fig.text(0.1 / width, 1 - (CONFUSION_TOP + CONFUSION_ROW * row + 0.3 + CONFUSION_TILE / 2) / height,
                 name.replace("-", "\n"), fontsize=8, va="center")
        for col, (_, pair) in enumerate(table.iterrows()):
            query, result = tile(row, col, False), tile(row, col, True)
            show_image(query, test.images[int(pair["query"])])
            query.set_title(f"{pair['query_label']} →", fontsize=7, fontweight="bold")
            show_image(result, gallery.images[int(pair["result"])])
            frame_tile(result, False)
            result.set_title(f"returned: {pair['result_label']}", fontsize=7, color="firebrick")
            result.text(-0.06, -0.06, f"{pair['share']:.0%} of {pair['query_label']}'s top {k}", transform=result.transAxes,
                        fontsize=7, ha="center", va="top")
        if table.empty:
            fig.text(CONFUSION_LEFT / width, 1 - (CONFUSION_TOP + CONFUSION_ROW * row + 0.8) / height,
                     "no confusion: every result shares its query's category", fontsize=8)
    fig.suptitle(f"Most frequent confusions in the top {k} (query category → returned category)", fontsize=9,
                 y=1 - 0.15 / height, va="top")
    return fig


def plot_map_bars(summary: pd.DataFrame, relevance: str, column: str = "map_report",
                  distance: str = "euclidean", protocol: str = "catalogue") -> Figure:
    """mAP@k per model (backbone and recipe), grouped by k, under one protocol; each bar with its
    95% bootstrap interval over queries (``<column>_low``, ``<column>_high``) when the summary has it."""
    rows = summary[(summary["distance"] == distance) & (summary["relevance"] == relevance)
                   & (summary["protocol"] == protocol)]
    models = list(dict.fromkeys(rows["model"]))  # the run's order, not alphabetical
    table = rows.pivot(index="k", columns="model", values=column)[models]
    has_interval = {f"{column}_low", f"{column}_high"} <= set(rows.columns)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.8 / max(len(models), 1)
    for number, model in enumerate(models):
        x = np.arange(len(table)) - 0.4 + width * (number + 0.5)
        values = table[model].to_numpy()
        tops = values
        error = None
        if has_interval:
            low = rows.pivot(index="k", columns="model", values=f"{column}_low")[model].to_numpy()
            high = rows.pivot(index="k", columns="model", values=f"{column}_high")[model].to_numpy()
            error, tops = np.vstack([values - low, high - values]), high
        ax.bar(x, values, width, label=model, yerr=error, capsize=3, error_kw={"elinewidth": 1, "ecolor": "0.2"})
        for left, value, top in zip(x, values, tops):  # above the interval, never on it
            ax.text(left, top + 0.01, f"{value:.2f}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(np.arange(len(table)), [f"Top {k}" for k in table.index])
    ax.set_ylabel(metric_label(column))
    ax.set_ylim(0, 1.08)
    interval = ";\nerror bars: 95% bootstrap interval over queries" if has_interval else ""
    ax.set_title(f"Retrieval quality per model ({protocol} protocol): relevant = same {relevance}, {distance} "
                 f"distance{interval}", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(len(models), 3),
              frameon=False)  # below the axes, never over a bar
    fig.tight_layout()
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
