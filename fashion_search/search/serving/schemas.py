"""What each answer of the HTTP API holds, for its documentation (``/docs``, ``/redoc``, the
OpenAPI file): the routes return plain dicts; these models describe them, and are not used to
validate or filter what is sent."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Product(BaseModel):
    """A product's metadata: ``id``, the colours read from its photo, and the index's own columns."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "example": {"id": "10017", "articleType": "Jackets", "gender": "Women", "price": None,
                    "colours": "purple grey"}})
    id: str = Field(description="the product's id")
    colours: str = Field(description="the colour names read from its photo, main first, space-separated")


class Result(Product):
    """A search result: rank, distance and, with a colour blend, its score, beside the product's metadata."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "example": {"rank": 1, "id": "10017", "distance": 0.1523, "articleType": "Jackets",
                    "gender": "Women", "price": None, "colours": "purple grey"}})
    rank: int = Field(description="1 is the closest")
    distance: float = Field(description="how far from the query (smaller is closer)")
    score: float | None = Field(default=None, description="the blend of distance and colour closeness that ordered "
                                                          "the results, when a colour was preferred")
    colour_distance: float | None = Field(default=None, description="CIELAB distance to the preferred colour")


class Answer(BaseModel):
    """Results, best first, and what to try when filters left none."""

    results: list[Result]
    hints: list[str] | None = Field(default=None, description="only when filters left no result: for each filter "
                                                              "that matches nothing, the values its key holds, "
                                                              "closest first")


class Garment(BaseModel):
    """A garment found in the query photo (or the box searched)."""

    box: list[int] = Field(description="x0, y0, x1, y1 in the photo's pixels")
    group: str = Field(description="top, bottom, full body, footwear, bag, accessory; whole photo; drawn box")
    score: float = Field(description="the localiser's confidence, 0..1")


class PhotoSize(BaseModel):
    width: int
    height: int


class PhotoAnswer(Answer):
    """A photo search's results, with the garments found in the photo and the one searched."""

    photo: PhotoSize
    garments: list[Garment] = Field(description="every garment found, main first (empty: the localiser was off, "
                                                "or the photo looks like a catalogue photo)")
    garment: int | None = Field(description="the number (from 1) of the garment searched; null for the whole "
                                            "photo or a drawn box")
    searched: Garment = Field(description="what was searched")


class FilterOption(BaseModel):
    """A filter key's common values (``more``: there are others), or its number range."""

    values: list[str] | None = None
    more: bool | None = None
    range: list[float] | None = Field(default=None, description="[lowest, highest]")


class Health(BaseModel):
    status: str = Field(description="ok")
    products: int = Field(description="products that can be found")


class Stats(BaseModel):
    index: dict = Field(description="the index: products, kind, model, metric, generation, ...")
    requests: dict[str, int] = Field(description="requests served since the start, by kind")
    model_calls: int = Field(description="model calls made (concurrent photos share one)")
    model_runtime: str
    uptime_s: float


class Changed(BaseModel):
    """A product added, replaced or removed, and how many products the index now holds."""

    id: str
    products: int


def documented(model: type[BaseModel], what: str) -> dict:
    """A route's ``responses`` entry documenting its 200 answer as ``model``."""
    return {200: {"model": model, "description": what}}
