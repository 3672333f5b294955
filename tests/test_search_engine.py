"""The search engine over a photo folder, with a tiny pixel model standing in for a CNN."""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashion_search.params import IndexParams
from fashion_search.search.embedding.embedder import Embedder, ModelError, check_identity, embed_catalog
from fashion_search.search.index.store import MANIFEST_FILE, ProductIndexError, open_index
from fashion_search.colour import ColourError
from fashion_search.search.engine import SearchEngine, build_index
from fashion_search.data.photo_folder import list_photo_folder


class PixelModel:
    """Mean colours of a 4×4 grid: similar photos get similar vectors, in no time."""

    calls = 0

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        PixelModel.calls += len(batch)
        b, size = batch.shape[0], batch.shape[1]
        cells = batch.reshape(b, 4, size // 4, 4, size // 4, 3).mean(axis=(2, 4))
        return (cells.reshape(b, -1) - 0.5).astype(np.float32)


def pixel_embedder(seed: str = "a") -> Embedder:
    identity = {"backbone": "pixels", "recipe": "frozen", "weights": "none", "weights_sha256": seed,
                "image_size": 16, "preprocessing": "x / 255", "dim": 48, "normalised": True, "model": "pixels"}
    return Embedder(PixelModel(), 16, lambda x: x / 255.0, identity)


SETTINGS = IndexParams(chunk_size=8, batch_size=4, lock_wait_s=0.5)


@pytest.fixture
def engine(photo_folder, tmp_path) -> SearchEngine:
    index = build_index(list_photo_folder(photo_folder), tmp_path / "index", SETTINGS, embedder=pixel_embedder())
    return SearchEngine(index, SETTINGS, pixel_embedder())


def test_a_catalogue_photo_finds_itself_first_then_its_like(engine, photo_folder):
    results = engine.search(engine.photo_query(photo_folder / "images" / "100.jpg"), k=6)
    assert results["id"].iloc[0] == "100" and results["distance"].iloc[0] == pytest.approx(0, abs=1e-4)
    assert (results["baseColour"] == "Red").all() and np.all(np.diff(results["distance"]) >= 0)
    assert results["colours"].iloc[0] == "red"


def test_filters_return_k_results_when_k_exist(engine, photo_folder):
    query = engine.photo_query(photo_folder / "images" / "100.jpg")
    shoes = engine.search(query, k=5, filters=["articleType=shoes"])
    assert len(shoes) == 5 and (shoes["articleType"] == "Shoes").all()
    blue = engine.search(query, k=20, filters=["colour=blue", "gender=Men"])
    assert len(blue) == 12 and (blue["baseColour"] == "Blue").all()  # all 12 blue products, no more
    with pytest.raises(Exception, match="unknown filter key 'size'"):
        engine.search(query, k=5, filters=["size=M"])


def test_more_like_this_excludes_the_product_and_colour_search_ranks_by_swatch(engine):
    similar = engine.search(engine.product_query("104"), k=5)
    assert "104" not in set(similar["id"]) and len(similar) == 5
    by_swatch = engine.search(engine.colour_query("blue"), k=12)
    assert (by_swatch["baseColour"] == "Blue").all()
    with pytest.raises(ProductIndexError, match="not in the index"):
        engine.product_query("nope")


def test_colour_weight_pulls_the_order_towards_the_swatch(engine, photo_folder):
    query = engine.photo_query(photo_folder / "images" / "100.jpg")  # a red T-shirt
    plain = engine.search(query, k=8)
    bluer = engine.search(query, k=8, colour_weight=0.9, swatch="blue")
    assert (plain["baseColour"] == "Blue").sum() < (bluer["baseColour"] == "Blue").sum()


def test_add_and_remove_without_a_rebuild(engine, photo_folder, tmp_path):
    engine.remove(["100", "101"])
    results = engine.search(engine.photo_query(photo_folder / "images" / "100.jpg"), k=25)
    assert not {"100", "101"} & set(results["id"]) and len(results) == 23
    extra = tmp_path / "new"
    extra.mkdir()
    shutil.copy(photo_folder / "images" / "100.jpg", extra / "500.jpg")
    shutil.copy(photo_folder / "images" / "102.jpg", extra / "102.jpg")  # replaces product 102
    engine.add(list_photo_folder(extra))
    reopened = SearchEngine(open_index(engine.index.folder, SETTINGS), SETTINGS, pixel_embedder())
    assert reopened.search(reopened.photo_query(extra / "500.jpg"), k=1)["id"].iloc[0] == "500"
    assert (reopened.index.products["id"] == "102").sum() == 2 and len(reopened.index.rows_of("102")) == 1
    assert int(reopened.index.live.sum()) == 24
    with pytest.raises(ProductIndexError, match="not in the index: 100"):
        reopened.remove(["100"])
    (extra / "bad.jpg").write_text("not a photo")  # alone in its batch: nothing added, still listed
    (extra / "500.jpg").unlink()
    (extra / "102.jpg").unlink()
    reopened.add(list_photo_folder(extra))
    report = pd.read_csv(reopened.index.folder / "skipped.csv", dtype=str)
    assert "bad" in set(report["id"]) and int(reopened.index.live.sum()) == 24


def test_bad_photos_are_skipped_listed_and_the_rest_indexed(photo_folder, tmp_path, damage_photos):
    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    images = folder / "images"
    damage_photos(images)
    Image.new("CMYK", (30, 40), (0, 255, 255, 0)).save(images / "104.jpg")           # converted, kept
    Image.new("RGBA", (30, 40), (200, 0, 0, 0)).save(images / "105.png")              # transparent, kept
    (images / "105.jpg").unlink()
    Image.fromarray(np.full((40, 30), 40000, np.uint16)).save(images / "106.png")     # 16-bit, kept
    (images / "106.jpg").unlink()
    palette = Image.new("P", (30, 40))
    palette.putpalette([20, 20, 180] * 256)
    palette.save(images / "107.png")                                                   # palette, kept
    (images / "107.jpg").unlink()
    Image.new("RGB", (300, 400), "red").save(images / "108.jpg")                       # above the pixel limit
    settings = dataclasses.replace(SETTINGS, max_image_pixels=50_000)
    index = build_index(list_photo_folder(folder), tmp_path / "index", settings, embedder=pixel_embedder())
    report = pd.read_csv(tmp_path / "index" / "skipped.csv", dtype=str)
    reasons = dict(zip(report["id"], report["reason"]))
    assert reasons["100"] == "empty file" and reasons["1000"] == "file missing"
    assert reasons["101"].startswith("not a readable image") and reasons["103"].startswith("not a readable image")
    assert reasons["108"].startswith("too large (300×400 pixels")
    assert {"104", "105", "106", "107"} <= set(index.products["id"]) and len(index.products) == 25 - 4


def test_indexing_resumes_from_the_chunks_already_embedded(photo_folder, tmp_path):
    catalog = list_photo_folder(photo_folder)
    ids = catalog.items["id"].tolist()

    class Interrupted(Exception):
        pass

    class FailingModel(PixelModel):
        def predict_on_batch(self, batch):
            if PixelModel.calls >= 16:
                raise Interrupted
            return super().predict_on_batch(batch)

    broken = pixel_embedder()
    broken.model = FailingModel()
    PixelModel.calls = 0
    with pytest.raises(Interrupted):
        embed_catalog(broken, ids, catalog.images, tmp_path / "work", chunk_size=8, batch_size=4)
    PixelModel.calls = 0
    done = embed_catalog(pixel_embedder(), ids, catalog.images, tmp_path / "work", chunk_size=8, batch_size=4)
    assert PixelModel.calls == len(ids) - 16 and len(done.vectors) == len(ids)


def test_an_interrupted_change_leaves_the_previous_index_whole(engine, photo_folder, tmp_path, monkeypatch):
    import fashion_search.search.index.store as product_index

    folder = engine.index.folder
    before = (folder / MANIFEST_FILE).read_text()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(product_index, "write_manifest", crash)  # dies just before the manifest switches
    extra = tmp_path / "new"
    extra.mkdir()
    shutil.copy(photo_folder / "images" / "100.jpg", extra / "700.jpg")
    with pytest.raises(KeyboardInterrupt):
        engine.add(list_photo_folder(extra))
    monkeypatch.undo()
    assert (folder / MANIFEST_FILE).read_text() == before
    reopened = open_index(folder, SETTINGS)
    assert len(reopened.products) == 25 and "700" not in set(reopened.products["id"])
    SearchEngine(reopened, SETTINGS, pixel_embedder()).add(list_photo_folder(extra))  # appends over the debris
    assert len(open_index(folder, SETTINGS).products) == 26


def test_another_model_is_refused(engine, photo_folder):
    with pytest.raises(ModelError, match="built with pixels"):
        check_identity(engine.index.identity, pixel_embedder("b").identity, "here")
    with pytest.raises(ProductIndexError, match="already holds an index"):
        build_index(list_photo_folder(photo_folder), engine.index.folder, SETTINGS,
                    embedder=pixel_embedder())


def test_a_farfetch_catalogue_filters_by_category_and_price_and_excludes_the_whole_product(farfetch_folder,
                                                                                            tmp_path):
    from fashion_search.data.farfetch import list_farfetch

    index = build_index(list_farfetch(farfetch_folder), tmp_path / "index", SETTINGS, embedder=pixel_embedder())
    engine = SearchEngine(index, SETTINGS, pixel_embedder())
    cutout = engine.search(engine.photo_query(farfetch_folder / "cutout-img" / "1001_7007_300.jpg"), k=2)
    assert cutout["id"].tolist() == ["1001_7007_300", "1001_11011_300"]  # itself, then its other view
    like = engine.search(engine.product_query("1001_7007_300"), k=5)
    assert "1001" not in set(like["product_id"]) and len(like) == 4
    cheap = engine.search(engine.product_query("1003"), k=5, filters=["price=..1000"])
    assert set(cheap["product_id"]) == {"1002", "1004"}
    shoes = engine.search(engine.product_query("1001"), k=5, filters=["category=Shoes", "gender=men"])
    assert shoes["product_id"].tolist() == ["1002", "1002"]


def test_a_second_process_changing_the_index_is_refused(engine):
    from fashion_search.search.index.store import locked

    with locked(engine.index.folder):
        with pytest.raises(ProductIndexError, match="another process is changing the index"):
            engine.remove(["100"])
    engine.remove(["100"])
    assert "100" not in set(engine.index.products["id"][engine.index.live])


def test_adding_photos_without_metadata_invents_no_column(engine, photo_folder, tmp_path):
    loose = tmp_path / "loose" / "summer"  # a sub-folder a catalogue without a CSV would call a category
    loose.mkdir(parents=True)
    shutil.copy(photo_folder / "images" / "100.jpg", loose / "n1.jpg")
    before = list(engine.index.products.columns)
    engine.add(list_photo_folder(tmp_path / "loose"))
    assert list(engine.index.products.columns) == before and "n1" in set(engine.index.products["id"])
    engine.add(list_photo_folder(tmp_path / "loose"), new_columns=True)  # on purpose: kept
    assert "category" in engine.index.products.columns


def test_match_colour_is_refused_where_the_vectors_hold_no_colour(engine):
    query = engine.product_query("100")
    assert engine.with_colour_match(query, 1.0) is query  # the default changes nothing
    with pytest.raises(ColourError, match="no colour part"):
        engine.search(query, k=3, match_colour=2.0)
