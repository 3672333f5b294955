"""Where one run's artefacts live: ``outputs/<run>/{data,models,features,metrics,figures,notebooks,reports}``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def variant_name(backbone: str, recipe: str) -> str:
    """The name of one backbone trained with one recipe, e.g. ``efficientnet_lite0-cosface``."""
    return f"{backbone}-{recipe}"


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

    def model(self, backbone: str, recipe: str) -> Path:
        return self.root / "models" / backbone / recipe

    def features(self, backbone: str, recipe: str) -> Path:
        return self.root / "features" / backbone / recipe

    def index(self, backbone: str, recipe: str) -> Path:
        """The search engine's index of the test catalogue, for one embedding model."""
        return self.root / "index" / backbone / recipe

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def retrieval(self) -> Path:
        return self.root / "metrics" / "retrieval"

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
