"""A figure of example shopper-photo queries, one per row: the photo with the garments found, the
garment cut out as the engine searches it, and the first results of the whole photo and of the garment."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from fashion_search.figures import save_figure, show_image
from fashion_search.search.embedding.garments import garment_pixels

SHOWN = 4  # results per way of searching


def example_figure(engine, queries: list, path: Path, rows: int = 4, condition: str = "all together") -> Path:
    """The first ``rows`` queries made under ``condition``, searched whole and through the localiser."""
    chosen = [q for q in queries if q.condition == condition][:rows]
    columns = 2 + 2 * SHOWN
    fig = Figure(figsize=(1.6 * columns, 1.8 * len(chosen)))  # without pyplot: a notebook shows it once, as saved
    axes = fig.subplots(len(chosen), columns, squeeze=False)
    for line, made in zip(axes, chosen):
        pixels = made.photo.pixels
        located = engine.pixels_query(pixels, "localiser")
        whole = engine.search(engine.pixels_query(pixels, "whole photo", localise=False), SHOWN)
        found = engine.search(located, SHOWN)
        show_image(line[0], pixels)
        for number, garment in enumerate(located.garments, 1):
            x0, y0, x1, y1 = garment.box
            line[0].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.5,
                                        color="red" if garment is located.garment else "orange"))
            line[0].text(x0 + 3, y0 + 12, str(number), color="white", fontsize=7, backgroundcolor="black")
        show_image(line[1], garment_pixels(pixels, located.garment) if located.garment.mask.size > 1 else pixels)
        for ax, (_, result) in zip(line[2:2 + SHOWN], whole.iterrows()):
            show_image(ax, result["path"])
        for ax, (_, result) in zip(line[2 + SHOWN:], found.iterrows()):
            show_image(ax, result["path"])
    for ax, title in zip(axes[0], ["photo, garments found", "garment searched", "whole photo: 1",
                                   *[str(i) for i in range(2, SHOWN + 1)], "garment: 1",
                                   *[str(i) for i in range(2, SHOWN + 1)]]):
        ax.set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)
