"""The shipped model (``fashion_lite0``): the files in the package are what its recipe writes, and
the search engine uses it when no model is named. Nothing here retrains it."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fashion_search.io import file_sha256
from fashion_search.models import shipped
from fashion_search.models.fused import COLOUR_DIM, build_heads
from fashion_search.params import FinetuneParams, IndexParams
from fashion_search.params_file import load_params

DEV_PHOTOS = Path("../shared/data/fashion-products-dev")
SMALL_PHOTOS = Path("../shared/data/fashion-products-small")


@pytest.fixture(scope="module")
def record() -> dict:
    return shipped.provenance()


def test_the_weights_file_is_the_one_its_provenance_names(record):
    assert record["name"] == shipped.SHIPPED_NAME and record["weights_file"] == shipped.WEIGHTS_FILE.name
    assert file_sha256(shipped.WEIGHTS_FILE) == record["weights_sha256"]
    assert shipped.WEIGHTS_FILE.stat().st_size < 2 * 10**6   # small: only what training changed, in int8 steps


def test_the_arrays_have_the_shapes_the_recipe_builds(record):
    heads = record["heads"]
    built = build_heads(heads["feature_dim"], tuple(heads["map_shape"]), heads["type_classes"],
                        heads["colour_classes"], FinetuneParams(embedding_dim=heads["embedding_dim"],
                                                                dropout=heads["dropout"],
                                                                type_hidden=heads["type_hidden"]), seed=0)
    expected = {f"type_head/{i}": list(w.shape) for i, w in enumerate(built.type_embedding.get_weights())}
    expected |= {f"colour_head/{i}": list(w.shape) for i, w in enumerate(built.colour_embedding.get_weights())}
    from fashion_search.models.backbones import build_feature_extractor

    extractor, _ = build_feature_extractor(record["backbone"], "none", record["image_size"])
    top = {f"top/{name}/{i}": list(w.shape) for name in record["top_layers"]
           for i, w in enumerate(extractor.get_layer(name).get_weights())}
    assert top and all(name.endswith("conv2d") for name in record["top_layers"])
    with np.load(shipped.WEIGHTS_FILE) as arrays:
        shapes = {key: list(arrays[key].shape) for key in arrays.files if not key.endswith("/scale")}
        assert shapes == expected | top and expected == heads["arrays"]
        assert all(np.isfinite(arrays[key]).all() and np.abs(arrays[key].astype(np.float64)).sum() > 0
                   for key in arrays.files)
    assert record["dim"] == heads["embedding_dim"] + COLOUR_DIM == heads["embedding_dim"] + record["colour_dims"]


def test_the_provenance_is_the_trainers_recipe(record):
    assert record["command"] == shipped.COMMAND and record["recipe"] == "tuned"
    makefile = Path("Makefile").read_text()
    target = makefile[makefile.index("shipped-model:"):].split("\n\n")[0]
    assert "fashion_search.pipeline.tuned_training" in target and "fashion_search.models.shipped" in target
    finetune = record["finetune"]   # the target trains what shipped
    assert f"--tops {' '.join(finetune['tops'])} --top-epochs {finetune['top_epochs']}" in target
    from fashion_search.models import tuned
    from fashion_search.backbone_specs import get_spec
    from fashion_search.pipeline import tuned_training

    assert record["top_layers"][0] == tuned.TOP_FROM[record["backbone"]][record["top"]]
    assert record["cache_block"] == tuned.CACHE_BLOCK[record["backbone"]]
    assert record["backbone"] == tuned_training.BACKBONE
    assert record["image_size"] == get_spec(tuned_training.BACKBONE).default_size
    assert record["data"]["training_photos"] > 32228 and record["data"]["seed"] == 42
    assert record["data"]["evaluation"] == "fashion-products-dev"


@pytest.mark.slow
def test_the_validation_figures_are_reproduced_from_the_shipped_files(record):
    """The recorded validation mAP@10 again, from the package's files, on the dev photos' validation half."""
    if not DEV_PHOTOS.is_dir():
        pytest.skip(f"needs the dev photos at {DEV_PHOTOS}")
    from fashion_search.data.catalog import relevance_codes
    from fashion_search.models.callbacks import gallery_map
    from fashion_search.models.tuned_photos import choosing_photos
    from fashion_search.search.embedding.embedder import embed_photos, load_embedder

    photos, queries = choosing_photos(DEV_PHOTOS, record["data"]["seed"])
    assert len(queries) == record["data"]["validation_photos"]
    embedder = load_embedder(IndexParams(model=shipped.SHIPPED_NAME, runtime="tensorflow"))
    vectors = embed_photos(embedder, [str(path) for path in photos.paths], 64).vectors
    for relevance, name in ((record["label_column"], "type"),
                            (f"{record['label_column']}+{record['colour_column']}", "type+colour")):
        codes = relevance_codes(photos.items, relevance)
        report, standard = gallery_map(vectors, codes, queries, record["validation"]["k"])
        assert report == pytest.approx(record["validation"][f"{name} report"], abs=0.005)
        assert standard == pytest.approx(record["validation"][f"{name} min(k,R)"], abs=0.005)


@pytest.mark.slow
def test_index_uses_the_shipped_model_by_default_and_says_so(photo_folder, tmp_path):
    index = tmp_path / "index"
    cli = [sys.executable, "-m", "fashion_search.cli"]
    built = subprocess.run([*cli, "index", str(photo_folder), "--index", str(index)], capture_output=True,
                           text=True, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert shipped.SHIPPED_NAME in built.stdout
    info = subprocess.run([*cli, "info", "--index", str(index), "--json"], capture_output=True, text=True, cwd=tmp_path)
    model = json.loads(info.stdout)["model"]
    assert model["model"] == shipped.SHIPPED_NAME and model["weights_sha256"] == shipped.provenance()["weights_sha256"]
    assert f"{shipped.provenance()['data']['training_photos']:,} labelled product photos" in model["description"]
    text = subprocess.run([*cli, "info", "--index", str(index)], capture_output=True, text=True, cwd=tmp_path).stdout
    assert "shipped with fashion-search" in text
    plain = subprocess.run([*cli, "index", str(photo_folder), "--index", str(tmp_path / "plain"), "--model",
                            "efficientnet_lite0"], capture_output=True, text=True, cwd=tmp_path)
    assert plain.returncode == 0 and "efficientnet_lite0 (frozen" in plain.stdout
    refused = subprocess.run([*cli, "index", str(photo_folder), "--index", str(tmp_path / "odd"), "--image-size",
                              "64"], capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 2 and "fashion_lite0 is fixed" in refused.stderr
    assert "Traceback" not in refused.stderr


PATCHED_CLI = """import sys
from pathlib import Path
from fashion_search.models import shipped
folder = Path(sys.argv[1])  # the shipped files are read from here instead of the package
shipped.SHIPPED_DIR = folder
shipped.WEIGHTS_FILE = folder / shipped.WEIGHTS_FILE.name
shipped.PROVENANCE_FILE = folder / shipped.PROVENANCE_FILE.name
from fashion_search.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _shipped_copies(folder: Path) -> tuple[Path, Path]:
    folder.mkdir()
    weights, record = folder / shipped.WEIGHTS_FILE.name, folder / shipped.PROVENANCE_FILE.name
    weights.write_bytes(shipped.WEIGHTS_FILE.read_bytes())
    record.write_bytes(shipped.PROVENANCE_FILE.read_bytes())
    return weights, record


def _change_weights(path: Path) -> None:
    with np.load(path) as arrays:
        changed = {key: arrays[key] for key in arrays.files}
    changed["colour_head/1"] = changed["colour_head/1"] + np.float16(0.5)   # still a valid file of the same shapes
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **changed)


def _edit_one_byte(path: Path) -> None:
    text = path.read_text()
    assert '"seed": 42' in text
    path.write_text(text.replace('"seed": 42', '"seed": 43', 1))   # still valid JSON


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, damaged", [(_change_weights, "npz"), (_edit_one_byte, "json"),
                                             (_truncate, "npz"), (_truncate, "json")])
def test_a_changed_or_damaged_shipped_file_is_one_line_saying_reinstall(damage, damaged, photo_folder, tmp_path):
    """In its own process: the CLI refuses the copies with one line naming the file, exit 2."""
    weights, record = _shipped_copies(tmp_path / "shipped")
    damage(weights if damaged == "npz" else record)
    done = subprocess.run([sys.executable, "-c", PATCHED_CLI, str(tmp_path / "shipped"), "index", str(photo_folder),
                           "--index", str(tmp_path / "index")], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and f"{shipped.SHIPPED_NAME}.{damaged}" in lines[0] and "reinstall" in lines[0], lines


def test_intact_copies_pass_the_check(tmp_path, monkeypatch):
    weights, record = _shipped_copies(tmp_path / "shipped")
    monkeypatch.setattr(shipped, "PROVENANCE_FILE", record)
    checked = shipped.provenance()
    assert checked == json.loads(record.read_text())
    assert shipped.checked_bytes(weights, checked["weights_sha256"]) == weights.read_bytes()


def test_ship_records_the_hashes_it_is_checked_against(tmp_path, monkeypatch):
    """What ``make shipped-model`` writes: the JSON names the weights' hash, the code module the JSON's."""
    weights, _ = _shipped_copies(tmp_path / "shipped")
    record = dict(shipped.provenance(), best="rewritten")
    module = tmp_path / "shipped_sha256.py"
    written = shipped.write_provenance(record, tmp_path / "shipped", module)
    namespace: dict = {}
    exec(module.read_text(), namespace)
    monkeypatch.setattr(shipped, "PROVENANCE_FILE", written)
    monkeypatch.setattr(shipped, "PROVENANCE_SHA256", namespace["PROVENANCE_SHA256"])
    assert shipped.provenance() == record and file_sha256(written) == namespace["PROVENANCE_SHA256"]
    assert shipped.checked_bytes(weights, record["weights_sha256"])


def test_an_index_of_an_earlier_shipped_model_asks_to_be_built_again():
    """After an upgrade that ships another fashion_lite0, a photo query names the change and the remedy."""
    from fashion_search.search.embedding.embedder import ModelError, check_identity

    now = {"model": shipped.SHIPPED_NAME, "backbone": "efficientnet_lite0", "recipe": "tuned",
           "weights_sha256": "b" * 64, "image_size": 224, "preprocessing": "p", "dim": 320, "normalised": True}
    earlier = dict(now, recipe="fused", weights_sha256="a" * 64)
    with pytest.raises(ModelError, match="fashion_lite0 changed with this fashion-search: index the photos again"):
        check_identity(earlier, now, "shop-index")
    other = dict(now, model=None, backbone="resnet50")
    with pytest.raises(ModelError, match="query with the index's own model"):
        check_identity(other, now, "shop-index")
    check_identity(now, dict(now), "shop-index")   # the same model: no complaint
