"""``params.yaml`` → validated :class:`~fashion_search.params.Params`, before any work starts.

Read the file, apply ``--set key=value`` overrides, check every key (type, range, allowed
values, columns the catalogue must have) and write the resolved parameters back. Every error
names the offending key (``finetune.frozen_epochs``) and what is allowed, so a typo is caught
in a second rather than after an hour of training.

The checks of single values are in :mod:`.params_values`, the ``index`` block in
:mod:`.params_index`.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from fashion_search.io import write_text_atomic
from fashion_search.backbone_specs import BACKBONES, WEIGHT_CHOICES
from fashion_search.params import (DATA_SOURCES, DEFAULT_LABEL_COLUMN, DISTANCES, PRECISIONS, RECIPES, SHIPPED_RECIPES,
                                   BackboneParams, ConfigError, DataParams, EvaluateParams, FeaturesParams,
                                   FinetuneParams, Params, PerClass, SplitFractions, VisualiseParams)
from fashion_search.params_index import parse_index
from fashion_search.params_values import check_keys, choice, integer, mapping, number, simple_block


def _parse_per_class(raw: Any) -> PerClass:
    raw = mapping(raw, "data.per_class")
    check_keys(raw, {"train", "validation", "test"}, "data.per_class")
    return PerClass(**{k: integer(v, f"data.per_class.{k}", 1, allow_none=True) for k, v in raw.items()})


def _parse_split(raw: Any) -> SplitFractions:
    raw = mapping(raw, "data.split")
    check_keys(raw, {"validation", "test"}, "data.split")
    split = SplitFractions(**{k: number(v, f"data.split.{k}", 0.0, 0.9) for k, v in raw.items()})
    if split.test == 0 or split.validation + split.test >= 1:
        raise ConfigError("'data.split' must give test a share above 0 and leave some items for training "
                          f"(validation + test < 1); got validation {split.validation}, test {split.test}")
    return split


def _column_name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value or "+" in value:
        raise ConfigError(f"'{key}' must be a column name, got {value!r}")
    return value


def _parse_data(raw: Any) -> DataParams:
    raw = mapping(raw, "data")
    check_keys(raw, {"source", "path", "label_column", "per_class", "split", "evaluation_path"}, "data")
    source = choice(raw.get("source", "fashion_mnist"), "data.source", DATA_SOURCES)
    label_column = _column_name(raw.get("label_column", DEFAULT_LABEL_COLUMN[source]), "data.label_column")
    if source == "fashion_mnist" and label_column != "category":
        raise ConfigError(f"'data.label_column' must be category for fashion_mnist, got {label_column!r}")
    path = _folder(raw.get("path"), "data.path")
    if source != "fashion_mnist" and path is None:
        raise ConfigError(f"'data.path' must name the catalogue's folder when 'data.source' is {source}")
    evaluation_path = _folder(raw.get("evaluation_path"), "data.evaluation_path")
    if evaluation_path is not None and source == "fashion_mnist":
        raise ConfigError("'data.evaluation_path' needs a folder catalogue ('data.source' photo_folder or farfetch)")
    return DataParams(source=source, path=path, label_column=label_column,
                      per_class=_parse_per_class(raw.get("per_class")), split=_parse_split(raw.get("split")),
                      evaluation_path=evaluation_path)


def _folder(path: Any, key: str) -> str | None:
    """An existing folder's absolute path (notebooks run from another folder), or None."""
    if path is None:
        return None
    if not isinstance(path, str):
        raise ConfigError(f"'{key}' must be a folder path or null, got {path!r}")
    if not Path(path).expanduser().is_dir():
        raise ConfigError(f"'{key}' is '{path}', which is not an existing folder; point it at the "
                          "catalogue, or set it to null to use the default location")
    return str(Path(path).expanduser().resolve())


def _parse_backbone(raw: Any, key: str) -> BackboneParams:
    if isinstance(raw, str):
        raw = {"name": raw}
    raw = mapping(raw, key)
    check_keys(raw, {"name", "weights", "image_size", "weights_path"}, key)
    if "name" not in raw:
        raise ConfigError(f"'{key}.name' is required; one of {', '.join(BACKBONES)}")
    name = choice(raw["name"], f"{key}.name", tuple(BACKBONES))
    spec = BACKBONES[name]
    weights = choice(raw.get("weights", "imagenet"), f"{key}.weights", WEIGHT_CHOICES)
    size = integer(raw.get("image_size"), f"{key}.image_size", allow_none=True)
    if size is not None:
        if size < spec.min_size:
            raise ConfigError(f"'{key}.image_size' must be at least {spec.min_size} for {name}, got {size}")
        if weights == "imagenet" and spec.fixed_size and size != spec.default_size:
            raise ConfigError(
                f"'{key}.image_size' must be {spec.default_size} (or null) for {name} with "
                f"ImageNet weights: its fully connected layers fix the input size; got {size}"
            )
    weights_path = raw.get("weights_path")
    if weights_path is not None:
        if weights != "imagenet":
            raise ConfigError(f"'{key}.weights_path' is set, so '{key}.weights' must be imagenet, not {weights!r}")
        if not isinstance(weights_path, str) or not Path(weights_path).expanduser().is_file():
            raise ConfigError(f"'{key}.weights_path' is {weights_path!r}, which is not an existing file")
    return BackboneParams(name=name, weights=weights, image_size=size, weights_path=weights_path)


def _parse_backbones(raw: Any) -> tuple[BackboneParams, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("'backbones' must be a non-empty list, e.g. [{name: resnet50, weights: imagenet}]")
    parsed = tuple(_parse_backbone(item, f"backbones[{i}]") for i, item in enumerate(raw))
    names = [b.name for b in parsed]
    if len(set(names)) != len(names):
        raise ConfigError(f"'backbones' lists a backbone twice: {names}")
    return parsed


def _string_list(value: Any, key: str, example: str) -> list:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"'{key}' must be a non-empty list, e.g. {example}; got {value!r}")
    return value


def _parse_finetune(raw: Any) -> FinetuneParams:
    raw = mapping(raw, "finetune")
    special = {"recipes", "task_columns", "precision", "devices"}
    params = simple_block(FinetuneParams, {k: v for k, v in raw.items() if k not in special}, "finetune")
    precision = choice(raw.get("precision", "auto"), "finetune.precision", PRECISIONS)
    devices = raw.get("devices", "auto")
    if isinstance(devices, bool) or not (devices in ("auto", "cpu") or (isinstance(devices, int) and devices >= 1)):
        raise ConfigError(f"'finetune.devices' must be auto, cpu or a number of GPUs (1 or more), got {devices!r}")
    recipes = _string_list(raw.get("recipes", ["softmax"]), "finetune.recipes", "[frozen, softmax]")
    recipes = tuple(choice(r, "finetune.recipes", RECIPES) for r in recipes)
    if len(set(recipes)) != len(recipes):
        raise ConfigError(f"'finetune.recipes' lists a recipe twice: {list(recipes)}")
    columns = raw.get("task_columns") or []
    if not isinstance(columns, list):
        raise ConfigError(f"'finetune.task_columns' must be a list of column names, got {columns!r}")
    columns = tuple(_column_name(c, "finetune.task_columns") for c in columns)
    if "multitask" in recipes and len(set(columns)) < 2:
        raise ConfigError("the multitask recipe needs 'finetune.task_columns' to list two or more label "
                          f"columns, e.g. [articleType, baseColour]; got {list(columns)}")
    trains = any(r not in ("frozen", "fused", *SHIPPED_RECIPES) for r in recipes)  # fused: heads only (head_epochs)
    if trains and params.frozen_epochs + params.unfrozen_epochs == 0:
        raise ConfigError("'finetune.frozen_epochs' and 'finetune.unfrozen_epochs' are both 0 while "
                          "'finetune.recipes' trains; train at least one epoch or use recipes: [frozen]")
    return dataclasses.replace(params, recipes=recipes, task_columns=columns, precision=precision, devices=devices)


def _parse_relevance(value: Any, label_column: str) -> tuple[str, ...]:
    """Relevance definitions: a column, or columns joined by '+' that must all match."""
    value = _string_list(value if value is not None else [label_column], "evaluate.relevance",
                         "[articleType, articleType+baseColour]")
    for item in value:
        if not isinstance(item, str) or not all(part.strip() for part in item.split("+")):
            raise ConfigError(f"'evaluate.relevance' entries are column names joined by '+', got {item!r}")
    return tuple(dict.fromkeys("+".join(p.strip() for p in item.split("+")) for item in value))


def _parse_evaluate(raw: Any, label_column: str) -> EvaluateParams:
    raw = mapping(raw, "evaluate")
    check_keys(raw, {"relevance", "ks", "distances", "query_batch_size"}, "evaluate")
    ks = raw.get("ks", [1, 5, 10])
    if not isinstance(ks, list) or not ks:
        raise ConfigError(f"'evaluate.ks' must be a non-empty list of integers, got {ks!r}")
    ks = tuple(sorted({integer(k, "evaluate.ks", minimum=1) for k in ks}))
    distances = raw.get("distances", list(DISTANCES))
    if not isinstance(distances, list) or not distances:
        raise ConfigError(f"'evaluate.distances' must be a non-empty list, got {distances!r}")
    distances = tuple(choice(d, "evaluate.distances", DISTANCES) for d in distances)
    batch = integer(raw.get("query_batch_size", 1024), "evaluate.query_batch_size", minimum=1)
    return EvaluateParams(relevance=_parse_relevance(raw.get("relevance"), label_column), ks=ks,
                          distances=distances, query_batch_size=batch)


def parse_params(raw: Any) -> Params:
    """Validate a nested dict (as read from YAML) into :class:`Params`."""
    raw = mapping(raw, "params.yaml")
    allowed = {f.name for f in dataclasses.fields(Params)}
    check_keys(raw, allowed, "")
    run = raw.get("run", "default")
    if not isinstance(run, str) or not run or not run.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"'run' must be a name of letters, digits, '-' and '_', got {run!r}")
    data = _parse_data(raw.get("data"))
    params = Params(
        run=run,
        seed=integer(raw.get("seed", 42), "seed", minimum=0),
        data=data,
        backbones=_parse_backbones(raw.get("backbones")),
        finetune=_parse_finetune(raw.get("finetune")),
        features=simple_block(FeaturesParams, raw.get("features"), "features"),
        evaluate=_parse_evaluate(raw.get("evaluate"), data.label_column),
        visualise=simple_block(VisualiseParams, raw.get("visualise"), "visualise"),
        index=parse_index(raw.get("index")),
    )
    shipped = [r for r in params.finetune.recipes if r in SHIPPED_RECIPES]
    if shipped and any(
            (b.name, b.weights, b.input_size) != ("efficientnet_lite0", "imagenet", 224) for b in params.backbones):
        raise ConfigError(f"the '{shipped[0]}' recipe is a shipped model, EfficientNet-Lite0 with ImageNet weights at "
                          "224 px: with it, 'backbones' must list only {name: efficientnet_lite0, weights: imagenet, "
                          "image_size: 224}")
    if params.visualise.top_k > max(params.evaluate.ks):
        raise ConfigError(
            f"'visualise.top_k' ({params.visualise.top_k}) must not exceed the largest of "
            f"'evaluate.ks' ({max(params.evaluate.ks)}): only that many neighbours are kept"
        )
    return params


def label_columns_used(params: Params) -> list[str]:
    """Every catalogue column the parameters train on or judge relevance by."""
    columns = [params.data.label_column, *params.finetune.task_columns]
    columns += [part for item in params.evaluate.relevance for part in item.split("+")]
    return list(dict.fromkeys(columns))


# ----------------------------------------------------------------------------- overrides
def apply_override(raw: dict, assignment: str) -> dict:
    """Return a copy of ``raw`` with ``key.sub=value`` applied (value parsed as YAML).

    List items are addressed by index: ``backbones.0.weights=none``.
    """
    if "=" not in assignment:
        raise ConfigError(f"override '{assignment}' must look like key.sub=value")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")
    value = yaml.safe_load(text)
    result = copy.deepcopy(raw)
    node: Any = result
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override '{key}': '{part}' is not an index of that list")
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
            if not last:
                node.setdefault(part, {})
        else:
            raise ConfigError(f"override '{key}': '{'.'.join(parts[:depth])}' is not a mapping")
        if last:
            node[index] = value
        else:
            node = node[index]
    return result


def read_yaml(path: str | Path) -> dict:
    """Read a YAML file into a dict, turning I/O and syntax problems into ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"'{path}' is not valid YAML: {err}") from err
    return mapping(raw, str(path))


def load_params(path: str | Path, overrides: list[str] | None = None) -> Params:
    """Read, override and validate a parameter file."""
    raw = read_yaml(path)
    for assignment in overrides or []:
        raw = apply_override(raw, assignment)
    return parse_params(raw)


def save_params(params: Params, path: str | Path) -> None:
    """Write the resolved parameters as YAML (atomically)."""
    write_text_atomic(path, yaml.safe_dump(params.to_dict(), sort_keys=False))
