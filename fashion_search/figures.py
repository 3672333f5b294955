"""Drawing helpers shared by the notebooks' figures and the search panel: show one catalogue
image on matplotlib axes, save a figure as a PNG."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from fashion_search.images import read_photo
from fashion_search.io import atomic_path

RELEVANT, IRRELEVANT = "#2e7d32", "#c62828"  # frames: a result that shares the query's label, or not


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (atomically) and return the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return Path(path)


def frame_tile(ax: plt.Axes, relevant: bool) -> str:
    """Frame a result tile green (relevant) or red; return the colour for its caption."""
    colour = RELEVANT if relevant else IRRELEVANT
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
    return colour


def show_image(ax: plt.Axes, image: np.ndarray | str) -> None:
    """Draw stored pixels, or the photo at a path, without axes."""
    if isinstance(image, (str, np.str_)):
        image = read_photo(image)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
    ax.set_xticks([])
    ax.set_yticks([])
