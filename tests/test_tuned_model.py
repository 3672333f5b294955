"""The tuned recipe: a backbone cut at its cache layer, its top trained from cached maps, and the
cache itself (built once, resumed, made anew for other settings)."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashion_search.backbone_specs import get_spec
from fashion_search.data.training_views import cut_from_scene, shopper_view
from fashion_search.data.shopper_photos import Conditions
from fashion_search.images import fit_to_square
from fashion_search.models import tuned
from fashion_search.models.backbones import build_feature_extractor
from fashion_search.models.fused import build_heads, fused_embedding_model, grid_cells
from fashion_search.models.tuned_photos import dev_parts
from fashion_search.params import FinetuneParams
from fashion_search.pipeline import lower_cache

SIZE = 64
CUT = tuned.CACHE_BLOCK["efficientnet_lite0"]


@pytest.fixture(scope="module")
def extractor() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_feature_extractor("efficientnet_lite0", "none", SIZE)[0]


def catalogue_photo(rng: np.random.Generator, height: int = 80, width: int = 60) -> np.ndarray:
    """A white page with a coloured blob in the middle, as a product photo looks."""
    pixels = np.full((height, width, 3), 255, np.uint8)
    pixels[height // 5:height * 4 // 5, width // 4:width * 3 // 4] = rng.integers(0, 200, 3)
    return pixels


def test_the_upper_part_of_the_lower_part_is_the_backbone(extractor):
    images = np.random.default_rng(1).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype(np.float32)
    lower, upper = tuned.lower_part(extractor, CUT), tuned.upper_part(extractor, CUT)
    pooled, maps = upper.predict(lower.predict(images, verbose=0), verbose=0)
    np.testing.assert_allclose(pooled, extractor.predict(images, verbose=0), atol=1e-5)
    assert maps.shape[1:3] == (grid_cells(extractor),) * 2
    with pytest.raises(ValueError, match="no block"):
        tuned.lower_part(extractor, "blocks_9_9")


@pytest.mark.parametrize("backbone", ["efficientnet_lite1", "efficientnet_lite2"])
def test_a_larger_lite_is_cut_at_the_end_of_its_fifth_stage_and_trains_its_last_two(backbone):
    """Lite1 and Lite2 have a block more in stage 5 and in stage 6 than Lite0: the same cut, by their names."""
    keras.utils.set_random_seed(0)
    larger = build_feature_extractor(backbone, "none", SIZE)[0]
    images = np.random.default_rng(2).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    cut = tuned.CACHE_BLOCK[backbone]
    lower, upper = tuned.lower_part(larger, cut), tuned.upper_part(larger, cut)
    cached = lower.predict(images, verbose=0)
    assert cached.shape[-1] == larger.get_layer(f"{cut}_conv_pwl_bn").output.shape[-1]
    np.testing.assert_allclose(upper.predict(cached, verbose=0)[0], larger.predict(images, verbose=0), atol=1e-5)
    top = tuned.trained_layers(upper, tuned.TOP_FROM[backbone]["last-6-blocks"])
    trained = {layer.name.split("_conv")[0] for layer in top}
    assert {b for b in trained if b.startswith("blocks_")} == {*(f"blocks_5_{i}" for i in range(5)), "blocks_6_0"}


def test_only_the_chosen_top_trains_and_batch_normalisation_never(extractor):
    upper = tuned.upper_part(extractor, CUT)
    first = tuned.TOP_FROM["efficientnet_lite0"]["last-block"]
    tuned.set_trainable(upper, first)
    trained = {w.path for w in upper.trainable_weights}
    assert any(first in path for path in trained)
    assert not any("blocks_5_" in path or "_bn" in path for path in trained)
    tuned.set_trainable(upper, None)
    assert not upper.trainable_weights
    with pytest.raises(ValueError, match="no layer"):
        tuned.set_trainable(upper, "no_such_layer")


def test_training_from_cached_maps_moves_the_top_and_the_whole_model_embeds_alike(extractor):
    rng = np.random.default_rng(2)
    lower, upper = tuned.lower_part(extractor, CUT), tuned.upper_part(extractor, CUT)
    cells = grid_cells(extractor)
    params = FinetuneParams(embedding_dim=8, type_hidden=0)
    heads = build_heads(int(upper.outputs[0].shape[-1]), tuple(upper.outputs[1].shape[1:]), 3, 2, params, 0)
    models = tuned.build_tuned(upper, heads, 3, 2)
    tuned.set_trainable(upper, tuned.TOP_FROM["efficientnet_lite0"]["last-block"])
    tuned.compile_tuned(models.training, 1e-2, params.scale, params.margin)
    images = rng.uniform(-1, 1, (8, SIZE, SIZE, 3)).astype(np.float32)
    maps = lower.predict(images, verbose=0)
    grids = rng.random((8, cells, cells, 245)).astype(np.float32)
    before = {w.path: np.array(w) for w in upper.weights}
    models.training.fit((maps, grids), {"type": rng.integers(0, 3, 8), "colour": rng.integers(0, 2, 8)},
                        epochs=2, verbose=0)
    moved = {path for path, value in before.items()
             if not np.array_equal(value, np.array(next(w for w in upper.weights if w.path == path)))}
    assert any("conv_head" in path for path in moved)
    assert not any("blocks_5_" in path or "moving" in path for path in moved)
    type_part, colour_part = models.embedding.predict([maps, grids], verbose=0)
    whole = fused_embedding_model(extractor, heads, 0.5).predict([images, grids], verbose=0)
    np.testing.assert_allclose(whole, np.hstack([type_part, 0.5 * colour_part]), atol=1e-4)


def test_the_paired_loss_is_low_when_each_view_is_nearest_its_own_photo_and_high_when_not():
    rng = np.random.default_rng(3)
    type_part = rng.normal(size=(6, 8)).astype(np.float32)
    colour_part = rng.normal(size=(6, 4)).astype(np.float32)
    layer = tuned.PairedViewLoss(0.1)
    matched = np.asarray(layer([np.vstack([type_part, type_part]), np.vstack([colour_part, colour_part])]))
    swapped = np.asarray(layer([np.vstack([type_part, type_part[::-1]]), np.vstack([colour_part, colour_part[::-1]])]))
    assert matched.shape == (12,)
    assert matched.mean() < 0.1 < 1.0 < swapped.mean()


def test_paired_batches_hold_each_photo_then_one_of_its_views():
    from fashion_search.pipeline.tuned_training import CachedBatches

    copies, photos = 3, 10
    maps = np.arange(copies * photos, dtype=np.float16).reshape(copies, photos, 1, 1, 1)   # value: copy·10 + photo
    cache = type("Cache", (), {"maps": maps, "grids": maps, "__len__": lambda self: photos})()
    codes = np.arange(photos) * 100
    batches = CachedBatches(cache, codes, codes + 1, 8, np.random.default_rng(0), copies, paired=True)
    assert len(batches) == 3   # 4 photos a batch
    seen = []
    for batch in range(len(batches)):
        (batch_maps, _), targets = batches[batch]
        values = batch_maps.reshape(-1).astype(int)
        half = len(values) // 2
        photo, view = values[:half], values[half:]
        assert (photo < photos).all() and (view // photos >= 1).all()   # copy 0, then a view
        np.testing.assert_array_equal(view % photos, photo)
        np.testing.assert_array_equal(targets["type"], np.concatenate([photo, photo]) * 100)
        assert len(targets["pair"]) == len(values)
        seen.extend(photo)
    assert sorted(seen) == list(range(photos))


def test_training_with_the_paired_loss_pulls_views_to_their_photos():
    rng = np.random.default_rng(4)
    keras.utils.set_random_seed(0)
    extractor = build_feature_extractor("efficientnet_lite0", "imagenet", SIZE)[0]   # random weights give alike features
    lower, upper = tuned.lower_part(extractor, CUT), tuned.upper_part(extractor, CUT)
    cells = grid_cells(extractor)
    params = FinetuneParams(embedding_dim=8, type_hidden=0, dropout=0.0)
    heads = build_heads(int(upper.outputs[0].shape[-1]), tuple(upper.outputs[1].shape[1:]), 8, 8, params, 0)
    models = tuned.build_tuned(upper, heads, 8, 8, pair_temperature=0.1)
    tuned.set_trainable(upper, tuned.TOP_FROM["efficientnet_lite0"]["last-block"])
    tuned.compile_tuned(models.paired, 3e-4, params.scale, params.margin, pair_weight=1.0)
    images = np.kron(rng.uniform(-1, 1, (8, 4, 4, 3)), np.ones((1, SIZE // 4, SIZE // 4, 1))).astype(np.float32)
    views = np.clip(images + rng.normal(0, 0.3, images.shape), -1, 1).astype(np.float32)
    maps = lower.predict(np.vstack([images, views]), verbose=0)
    grids = rng.random((16, cells, cells, 245)).astype(np.float32)
    codes = np.tile(np.arange(8), 2)
    targets = {"type": codes, "colour": codes, "pair": np.zeros(16)}
    before = models.paired.evaluate((maps, grids), targets, batch_size=16, verbose=0, return_dict=True)
    fit = models.paired.fit((maps, grids), targets, batch_size=16, epochs=40, verbose=0, shuffle=False)
    assert fit.history["pair_loss"][-1] < 0.5 * before["pair_loss"]


def saved_photos(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` catalogue-like photos written as JPEG files in ``folder``."""
    rng = np.random.default_rng(seed)
    paths = [folder / f"{i}.jpg" for i in range(count)]
    for path in paths:
        Image.fromarray(catalogue_photo(rng)).save(path)
    return paths


def test_the_cache_holds_each_photo_and_its_views_and_resumes(tmp_path, extractor, monkeypatch):
    paths = saved_photos(tmp_path, 5, 3)
    monkeypatch.setattr(lower_cache, "CHUNK", 2)
    lower = tuned.lower_part(extractor, CUT)
    preprocess = get_spec("efficientnet_lite0").preprocess
    cells = grid_cells(extractor)
    cache = lower_cache.build_lower_cache(lower, "m", paths, tmp_path / "cache", 2, SIZE, cells, preprocess, [], 0, "t")
    assert cache.maps.shape == (2, 5, *lower.output.shape[1:]) and cache.maps.dtype == np.float16
    assert cache.grids.shape == (2, 5, cells, cells, 245)
    framed = fit_to_square(np.asarray(Image.open(paths[4]).convert("RGB")), SIZE)
    direct = lower.predict(preprocess(framed[None].astype(np.float32)), verbose=0)[0]
    np.testing.assert_allclose(np.asarray(cache.maps[0, 4], np.float32), direct, atol=2e-2, rtol=1e-2)
    assert not np.array_equal(cache.maps[0], cache.maps[1])   # the views differ from the photos
    first = np.array(cache.maps)

    def refuse(*_):
        raise AssertionError("a finished cache is not computed again")
    monkeypatch.setattr(lower, "predict_on_batch", refuse)
    again = lower_cache.build_lower_cache(lower, "m", paths, tmp_path / "cache", 2, SIZE, cells, preprocess, [], 0, "t")
    np.testing.assert_array_equal(np.array(again.maps), first)
    with pytest.raises(AssertionError, match="not computed again"):   # other settings: made anew
        lower_cache.build_lower_cache(lower, "m", paths, tmp_path / "cache", 3, SIZE, cells, preprocess, [], 0, "t")


def test_an_interrupted_cache_computes_only_what_is_missing(tmp_path, extractor, monkeypatch):
    paths = saved_photos(tmp_path, 4, 4)
    monkeypatch.setattr(lower_cache, "CHUNK", 2)
    lower = tuned.lower_part(extractor, CUT)
    preprocess = get_spec("efficientnet_lite0").preprocess
    real, calls = lower.predict_on_batch, []

    def failing_second(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(batch)
    monkeypatch.setattr(lower, "predict_on_batch", failing_second)
    with pytest.raises(KeyboardInterrupt):
        lower_cache.build_lower_cache(lower, "m", paths, tmp_path / "cache", 1, SIZE, 1, preprocess, [], 0, "t")
    monkeypatch.setattr(lower, "predict_on_batch", lambda batch: (calls.append(len(batch)), real(batch))[1])
    calls.clear()
    cache = lower_cache.build_lower_cache(lower, "m", paths, tmp_path / "cache", 1, SIZE, 1, preprocess, [], 0, "t")
    assert calls == [2]   # the first chunk was kept
    assert np.isfinite(np.asarray(cache.maps, np.float32)).all() and np.abs(np.asarray(cache.maps[0, 3])).sum() > 0


def test_a_shopper_view_is_seeded_and_a_cut_out_from_a_scene_is_white_around_the_product():
    pixels = catalogue_photo(np.random.default_rng(5), 120, 90)
    scene = np.random.default_rng(6).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    first = shopper_view(np.random.default_rng([1, 2]), pixels, [scene])
    assert first.dtype == np.uint8 and first.ndim == 3
    np.testing.assert_array_equal(first, shopper_view(np.random.default_rng([1, 2]), pixels, [scene]))
    cut = cut_from_scene(np.random.default_rng(7), pixels, [scene], Conditions(cast=False, camera=False))
    corners = np.stack([cut[0, 0], cut[0, -1], cut[-1, 0], cut[-1, -1]])
    assert (corners == 255).all()
    assert cut_from_scene(np.random.default_rng(7), np.full((50, 40, 3), 255, np.uint8), [scene],
                          Conditions()) is None   # no product on the page


def test_the_dev_parts_are_disjoint_and_the_test_part_is_the_benchmarks_test_half(tmp_path):
    labels = pd.DataFrame({"id": [str(i) for i in range(300)], "articleType": [f"t{i % 7}" for i in range(300)],
                           "baseColour": ["Red"] * 300})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    parts = dev_parts(Path(tmp_path), 42)
    ids = [set(part["id"]) for part in parts.values()]
    assert sum(map(len, ids)) == 300 and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    from fashion_search.data import evaluation_split

    halves = evaluation_split(labels["articleType"].to_numpy(), 0.5, 42)
    assert ids[2] == set(labels["id"][halves == "test"])
    assert abs(len(ids[0]) - 2 * len(ids[1])) <= 1


def _photo_folder(root: Path, rng: np.random.Generator, count: int, size: tuple[int, int]) -> None:
    """A labelled folder (``labels.csv``, ``images/<id>.jpg``) of two types in two colours."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(count):
        kind, colour = ["Tshirts", "Jeans"][i % 2], ["Red", "Blue"][(i // 2) % 2]
        pixels = np.full((size[1], size[0], 3), 255, np.uint8)
        fill = (200, 30, 30) if colour == "Red" else (30, 30, 200)
        if kind == "Tshirts":
            pixels[size[1] // 5:size[1] * 3 // 5, size[0] // 6:size[0] * 5 // 6] = fill
        else:
            pixels[size[1] // 8:size[1] * 7 // 8, size[0] * 2 // 5:size[0] * 3 // 5] = fill
        pixels = np.clip(pixels + rng.normal(0, 4, pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{root.name}{i}.jpg")
        rows.append({"id": f"{root.name}{i}", "articleType": kind, "baseColour": colour, "subCategory": "Topwear"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)


@pytest.mark.slow
def test_the_trainer_writes_a_model_folder_the_engine_embeds_with(tmp_path, monkeypatch):
    """Cache, heads, top, choice and the saved model, end to end on a tiny catalogue; then ship it."""
    import json

    from fashion_search.data import backgrounds
    from fashion_search.models import saved, shipped
    from fashion_search.pipeline import tuned_training
    from fashion_search.params import IndexParams
    from fashion_search.search.embedding.embedder import embed_photos, load_embedder

    rng = np.random.default_rng(8)
    _photo_folder(tmp_path / "small", rng, 24, (60, 80))
    _photo_folder(tmp_path / "dev", rng, 36, (90, 120))
    monkeypatch.setattr(backgrounds, "load_backgrounds", lambda role: [backgrounds.made_background(rng, 200)])
    out = tmp_path / "model"
    assert tuned_training.main(["--small", str(tmp_path / "small"), "--dev", str(tmp_path / "dev"), "--out", str(out),
                                "--cache", str(tmp_path / "cache"), "--copies", "2", "--tops", "last-block",
                                "--head-epochs", "1", "--top-epochs", "2", "--top-schedule", "cosine",
                                "--paired-epochs", "1", "--batch-size", "8"]) == 0
    manifest = saved.read_manifest(out)
    assert manifest["recipe"] == "tuned" and manifest["top_layers"][0] == "blocks_6_0_conv_pw_conv2d"
    assert manifest["data"]["training_photos"] == 24 + 12   # the small photos and two thirds of the dev half
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4] and (out / "colour_weights.csv").is_file()
    assert manifest["choices"]["epoch"] == 4   # with paired epochs, one of them is kept
    assert history["learning_rate_at_end"].iloc[0] == pytest.approx(1e-3)   # the heads alone: constant
    assert history["learning_rate_at_end"].iloc[1] == pytest.approx(5e-5, rel=0.02)   # half way down the cosine
    assert history["learning_rate_at_end"].iloc[2] < 1e-9   # and at zero after the top's last epoch
    assert history["learning_rate_at_end"].iloc[3] < 1e-9   # the paired epoch: a cosine of its own
    embedder = load_embedder(IndexParams(model=str(out), runtime="tensorflow"))
    photo = str(next((tmp_path / "dev" / "images").iterdir()))
    vectors = embed_photos(embedder, [photo], 1).vectors
    assert vectors.shape == (1, manifest["heads"]["embedding_dim"] + manifest["colour_dims"])

    record = shipped.ship(out, tmp_path / "shipped", tmp_path / "sha.py")
    assert json.loads((tmp_path / "shipped" / f"{shipped.SHIPPED_NAME}.json").read_text()) == record
    rebuilt = shipped.build_shipped(tmp_path / "shipped" / record["weights_file"], record)
    again = embed_photos(type(embedder)(rebuilt, embedder.image_size, embedder.preprocess, embedder.identity),
                         [photo], 1).vectors
    np.testing.assert_allclose(again, vectors, atol=0.05)   # stored in int8 steps: close, not equal


def test_a_top_the_backbone_does_not_have_is_refused_before_any_work(tmp_path, capsys):
    from fashion_search.pipeline import tuned_training

    with pytest.raises(SystemExit) as refused:
        tuned_training.main(["--backbone", "efficientnet_lite1", "--tops", "last-5-blocks",
                             "--out", str(tmp_path / "m"), "--cache", str(tmp_path / "cache")])
    assert refused.value.code == 2 and "its tops: last-block, last-6-blocks" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("options, said", [
    (["--paired-epochs", "1", "--copies", "1"], "needs views"), (["--paired-epochs", "1", "--train-copies", "1"], "needs views"),
    (["--paired-epochs", "-1"], "0 or more"), (["--pair-weight", "0"], "above 0"), (["--pair-temperature", "0"], "above 0"),
    (["--top-epochs", "-1"], "0 or more"), (["--head-epochs", "0", "--top-epochs", "0"], "nothing to train")])
def test_a_paired_loss_without_views_or_a_bad_value_or_nothing_to_train_is_refused_before_any_work(tmp_path, capsys,
                                                                                                   options, said):
    from fashion_search.pipeline import tuned_training

    with pytest.raises(SystemExit) as refused:
        tuned_training.main([*options, "--out", str(tmp_path / "m"), "--cache", str(tmp_path / "cache")])
    assert refused.value.code == 2 and said in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "cache").exists()


def test_a_folder_of_someone_elses_arrays_is_refused_not_overwritten(tmp_path, extractor):
    paths = saved_photos(tmp_path, 2, 5)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "maps.npy").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="no cache of this trainer wrote"):
        lower_cache.build_lower_cache(tuned.lower_part(extractor, CUT), "m", paths, tmp_path / "cache", 1, SIZE, 1,
                                      get_spec("efficientnet_lite0").preprocess, [], 0, "t")
    assert (tmp_path / "cache" / "maps.npy").read_bytes() == b"mine"
