"""Where one run's artefacts live, and the one backbone × recipe iteration every stage walks.

``outputs/<run>/{data,models,features,index,metrics,figures,notebooks,reports}``: each stage
writes only its own folders.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fashion_search.params import BackboneParams, Params


def variant_name(backbone: str, recipe: str) -> str:
    """The name of one backbone trained with one recipe, e.g. ``efficientnet_lite0-cosface``."""
    return f"{backbone}-{recipe}"


@dataclass(frozen=True)
class Variant:
    """One embedding model of a run: a backbone with a recipe."""

    backbone: BackboneParams
    recipe: str

    @property
    def name(self) -> str:
        return variant_name(self.backbone.name, self.recipe)


def variants(params: Params) -> Iterator[Variant]:
    """Every backbone with every recipe, in parameter order (backbones outer)."""
    for backbone in params.backbones:
        for recipe in params.finetune.recipes:
            yield Variant(backbone, recipe)


@dataclass(frozen=True)
class RunLayout:
    """The folders of one run; each stage writes only its own."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def model(self, variant: Variant) -> Path:
        return self.root / "models" / variant.backbone.name / variant.recipe

    def features(self, variant: Variant) -> Path:
        return self.root / "features" / variant.backbone.name / variant.recipe

    def index(self, variant: Variant) -> Path:
        """The search engine's index of the test catalogue, for one embedding model."""
        return self.root / "index" / variant.backbone.name / variant.recipe

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def retrieval(self) -> Path:
        return self.root / "metrics" / "retrieval"

    def per_query(self, model: str, relevance: str, distance: str, protocol: str = "test split") -> Path:
        """One model's average precision per query, under one relevance, distance and protocol (04 writes it)."""
        suffix = "" if protocol == "test split" else f"_{protocol}"
        return self.retrieval / f"per_query_{model}_{relevance}_{distance}{suffix}.csv"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def stamp(self, stage: str) -> Path:
        return self.notebooks / f".{stage}.done.json"
