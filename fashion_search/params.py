"""The typed parameters: every knob of ``params.yaml``, one frozen dataclass per block.

Reading, overriding and validating the file is :mod:`fashion_search.params_file`'s job. This
module imports neither Keras nor TensorFlow, so commands that need no model start fast.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from fashion_search.backbone_specs import BACKBONES

DATA_SOURCES = ("fashion_mnist", "photo_folder", "farfetch")
# evaluate.distances: jaccard is the weighted form (Σmin/Σmax), for non-negative features only; a model
# whose features have negative values (cosface's embedding) is reported as not applicable to it
DISTANCES = ("euclidean", "cosine", "jaccard")
# frozen: the pretrained backbone as is; softmax: the report's classification head;
# cosface: an L2-normalised embedding trained with a margin softmax over cosines (CosFace);
# multitask: the same embedding trained on several label columns at once.
# fused: type and colour heads on frozen features; shipped: the model that ships with the package
# (fashion_lite0, no training here), to compare with; shipped_heads: the model shipped before it
# (heads on frozen features), kept for comparison.
SHIPPED_RECIPES = ("shipped", "shipped_heads")  # models in the package: nothing is trained
RECIPES = ("frozen", "softmax", "cosface", "multitask", "fused", *SHIPPED_RECIPES)
BACKBONE_RECIPES = ("softmax", "cosface", "multitask")  # the recipes that train the backbone itself
PRECISIONS = ("auto", "float32", "mixed_float16")  # finetune.precision (auto: mixed_float16 on GPUs)
DEFAULT_LABEL_COLUMN = {"fashion_mnist": "category", "photo_folder": "articleType", "farfetch": "category"}


class ConfigError(ValueError):
    """A parameter file that cannot be used; the message names the key."""


@dataclass(frozen=True)
class PerClass:
    """How many images of each class go into each split (``null``: all of them)."""

    train: int | None = 100
    validation: int | None = 20
    test: int | None = 50


@dataclass(frozen=True)
class SplitFractions:
    """Shares of each class drawn, stratified, into validation and test (photo folders)."""

    validation: float = 0.15
    test: float = 0.2


@dataclass(frozen=True)
class DataParams:
    source: str = "fashion_mnist"
    path: str | None = None
    label_column: str = "category"
    per_class: PerClass = field(default_factory=PerClass)
    split: SplitFractions = field(default_factory=SplitFractions)
    evaluation_path: str | None = None   # photos only validated and tested on (see load_catalogue)


@dataclass(frozen=True)
class BackboneParams:
    name: str
    weights: str = "imagenet"
    image_size: int | None = None
    weights_path: str | None = None

    @property
    def input_size(self) -> int:
        """The side in pixels images are resized to for this backbone."""
        return self.image_size or BACKBONES[self.name].default_size


@dataclass(frozen=True)
class FinetuneParams:
    recipes: tuple[str, ...] = ("softmax",)
    task_columns: tuple[str, ...] = ()
    batch_size: int = 32
    frozen_epochs: int = 2
    unfrozen_epochs: int = 3
    learning_rate: float = 1e-3
    unfrozen_learning_rate: float = 1e-4
    unfreeze_fraction: float = 0.2
    patience: int = 2
    dropout: float = 0.2
    embedding_dim: int = 256
    margin: float = 0.2
    scale: float = 30.0
    augment: bool = True
    monitor_k: int = 10
    head_epochs: int = 30
    type_hidden: int = 0     # fused: width of the type head's hidden layer (0: one linear layer)
    precision: str = "auto"  # auto (mixed_float16 on GPUs, float32 on a CPU) | float32 | mixed_float16
    devices: str | int = "auto"  # auto (every GPU, else the CPU) | cpu | a number of GPUs (MirroredStrategy)


@dataclass(frozen=True)
class FeaturesParams:
    batch_size: int = 32
    chunk_size: int = 1024


@dataclass(frozen=True)
class EvaluateParams:
    relevance: tuple[str, ...] = ()
    ks: tuple[int, ...] = (1, 5, 10)
    distances: tuple[str, ...] = DISTANCES
    query_batch_size: int = 1024


@dataclass(frozen=True)
class VisualiseParams:
    n_queries: int = 4
    top_k: int = 10


INDEX_TYPES = ("auto", "flat", "hnsw", "ivfpq")
INDEX_METRICS = ("inner_product", "l2")
INDEX_BACKENDS = ("faiss", "milvus")
MODEL_RUNTIMES = ("auto", "onnx", "tensorflow")
INDEX_EXECUTORS = ("local", "ray")  # who embeds a catalogue: this process, or a Ray cluster


@dataclass(frozen=True)
class IndexParams:
    """The search engine: which model embeds photos, and which index (faiss or Milvus) holds them."""

    model: str = "fashion_lite0"        # the shipped model, a backbone name (used frozen) or a trained model folder
    backend: str = "faiss"              # faiss (a file in the index folder) or milvus (a collection at uri)
    uri: str | None = None              # milvus: a local path (Milvus Lite) or http://host:19530
    runtime: str = "auto"               # what runs the model: onnx (ONNX Runtime), tensorflow, or auto (onnx if it can)
    weights: str = "imagenet"
    image_size: int | None = None
    type: str = "auto"
    metric: str = "inner_product"
    normalise: bool = True
    flat_max_items: int = 50_000
    memory_budget_gb: float = 8.0
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64
    ivf_nprobe: int = 32
    pq_bytes: int = 32
    rerank: int = 50
    exact_filter_rows: int = 20_000
    colour_pool: int = 100
    batch_size: int = 32
    chunk_size: int = 512
    max_image_pixels: int = 60_000_000
    lock_wait_s: float = 10.0            # how long a change waits for another process's change to finish
    executor: str = "local"              # who embeds a catalogue: local (this process) or ray (a Ray cluster)
    ray_address: str | None = None       # ray: null starts Ray on this machine; "auto", host:6379 or ray://host:10001
    ray_actors: int = 0                  # ray: processes holding the model (0: one per core of the cluster)
    ray_min_photos: int = 2_000          # ray: fewer photos than this are embedded in this process (Ray's start costs more)


@dataclass(frozen=True)
class Params:
    run: str = "default"
    seed: int = 42
    data: DataParams = field(default_factory=DataParams)
    backbones: tuple[BackboneParams, ...] = ()
    finetune: FinetuneParams = field(default_factory=FinetuneParams)
    features: FeaturesParams = field(default_factory=FeaturesParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    visualise: VisualiseParams = field(default_factory=VisualiseParams)
    index: IndexParams = field(default_factory=IndexParams)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples), as it would be written to YAML."""
        return json.loads(json.dumps(dataclasses.asdict(self)))
