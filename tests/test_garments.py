"""Garments in shopper photos: cut-outs, made photos, decoding the localiser, cutting a garment out."""
from __future__ import annotations

import numpy as np
import pytest

from fashion_search.data import backgrounds
from fashion_search.data.cutouts import GROUPS, cut_out, garment_group, product_mask
from fashion_search.data.shopper_photos import CONDITIONS, Conditions, compose
from fashion_search.models.localiser import CLASSES, Garment, garments_from, square_frame
from fashion_search.search.embedding.garments import (GarmentError, GarmentFinder, catalogue_page, drawn_box,
                                                      garment_pixels, pick, whole_photo)


def catalogue_photo(colour=(200, 30, 40), box=(60, 80, 160, 240), size=(300, 225)) -> np.ndarray:
    """A product (a filled rectangle) on a white page."""
    pixels = np.full((*size, 3), 255, np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = colour
    return pixels


def test_a_catalogue_photo_gives_its_product_as_the_cut_out():
    photo = catalogue_photo()
    assert product_mask(photo)[100, 100] and not product_mask(photo)[10, 10]
    cutout = cut_out(photo, garment_group("Topwear"))
    assert cutout.pixels.shape == (160, 100, 3) and cutout.mask.all()
    assert GROUPS[cutout.group] == "top" and GROUPS[garment_group("Flip Flops")] == "footwear"
    assert GROUPS[garment_group("Something new")] == "accessory"


def test_a_product_in_pieces_or_too_small_is_no_cut_out():
    pieces = catalogue_photo(box=(20, 20, 60, 60))
    pieces[200:260, 150:210] = (20, 20, 200)
    assert cut_out(pieces, 0) is None
    assert cut_out(catalogue_photo(box=(100, 100, 110, 110)), 0) is None


def test_made_photos_know_each_product_s_visible_mask_and_box():
    rng = np.random.default_rng(0)
    red, blue = cut_out(catalogue_photo(), 0), cut_out(catalogue_photo((20, 30, 200)), 1)
    plain = compose(rng, [red], None, 200, CONDITIONS["scaled and rotated, on white"])
    assert len(plain.masks) == 1 and plain.masks[0].any()
    x0, y0, x1, y1 = plain.boxes[0]
    assert plain.masks[0][y0:y1, x0:x1].sum() == plain.masks[0].sum()
    assert (plain.pixels[plain.masks[0]][:, 0] > 150).mean() > 0.9  # the product's own colour where its mask says
    background = np.zeros((200, 200, 3), np.uint8)
    both = compose(rng, [red, blue], background, 200, Conditions(placed=False, cast=False, camera=False))
    assert not both.masks[0].any()  # the second, pasted in the same place, hides the first
    assert set(np.unique(both.group_map())) == {0, 2}


def test_the_localiser_s_cells_become_garments_in_the_photo_s_pixels():
    probabilities = np.zeros((28, 28, CLASSES), np.float32)
    probabilities[..., 0] = 1.0
    probabilities[4:12, 8:20] = np.eye(CLASSES)[1]   # a top
    probabilities[16:26, 8:20] = np.eye(CLASSES)[2]  # trousers below it
    height, width = 600, 448                          # a portrait photo: white bands left and right
    garments = garments_from(probabilities, height, width)
    assert [g.group for g in garments] == ["top", "bottom"] or [g.group for g in garments] == ["bottom", "top"]
    scale, left, top = square_frame(height, width)
    for garment, rows, cols in zip(sorted(garments, key=lambda g: g.box[1]), [(4, 12), (16, 26)], [(8, 20)] * 2):
        x0, y0, x1, y1 = garment.box
        assert abs(y0 - (rows[0] * 8 - top) / scale) <= 16 and abs(y1 - (rows[1] * 8 - top) / scale) <= 16
        assert abs(x0 - (cols[0] * 8 - left) / scale) <= 16 and abs(x1 - (cols[1] * 8 - left) / scale) <= 16
    assert garments_from(np.eye(CLASSES)[np.zeros((28, 28), int)].astype(np.float32), 100, 100) == []


def test_pieces_of_one_group_a_cell_apart_are_one_garment_and_far_apart_two():
    probabilities = np.zeros((28, 28, CLASSES), np.float32)
    probabilities[..., 0] = 1.0
    probabilities[8:20, 4:10] = np.eye(CLASSES)[4]    # a shoe ...
    probabilities[8:20, 11:17] = np.eye(CLASSES)[4]   # ... and its pair, one cell to its right
    probabilities[8:20, 24:27] = np.eye(CLASSES)[4]   # another shoe, far off
    garments = sorted(garments_from(probabilities, 224, 224), key=lambda g: g.box[0])
    assert [g.group for g in garments] == ["footwear", "footwear"]
    assert garments[0].box[0] < 4 * 8 + 8 and garments[0].box[2] > 17 * 8 - 8   # the pair, boxed together
    assert garments[1].box[0] > 20 * 8


def test_a_product_taken_partly_for_another_group_is_cut_out_whole():
    probabilities = np.zeros((28, 28, CLASSES), np.float32)
    probabilities[..., 0] = 1.0
    probabilities[4:20, 8:20] = np.eye(CLASSES)[1]    # a top ...
    probabilities[14:20, 8:20] = np.eye(CLASSES)[2]   # ... whose lower part looks like trousers
    photo = np.zeros((224, 224, 3), np.uint8)          # a dark product on a dark floor: only the mask tells
    main = garments_from(probabilities, 224, 224)[0]
    assert main.group == "top"
    kept = garment_pixels(photo, Garment((0, 0, 224, 224), main.group, main.score, main.mask)) == 0
    rows = kept.all(axis=-1).any(axis=1)
    assert rows[14 * 8 + 4:20 * 8 - 4].all()   # the lower part is kept, not whitened
    assert not rows[:4 * 8 - 4].any()           # the floor above it is whitened


def test_a_garment_is_cut_out_with_the_rest_whitened():
    photo = np.zeros((100, 200, 3), np.uint8)
    mask = np.zeros((50, 100), bool)
    mask[10:30, 20:60] = True
    garment = Garment((40, 20, 120, 60), "top", 1.0, mask)
    crop = garment_pixels(photo, garment)
    assert crop.shape[0] < 100 and crop.shape[1] < 200
    assert (crop == 255).all(axis=-1).any() and (crop == 0).all(axis=-1).any()


def test_catalogue_photos_are_searched_whole_and_shopper_photos_are_not():
    assert catalogue_page(catalogue_photo()) is not None
    textured = np.random.default_rng(0).integers(0, 255, (300, 225, 3)).astype(np.uint8)
    assert catalogue_page(textured) is None
    assert whole_photo(textured).box == (0, 0, 225, 300)


def test_a_light_patch_of_a_scene_along_part_of_the_edge_is_not_a_page():
    scene = np.full((300, 300, 3), (30, 60, 140), np.uint8)   # a dark blue wall ...
    scene[:, :210] = (235, 240, 250)                          # ... most of it light, along 60% of the edge
    scene[120:180, 100:160] = (200, 30, 30)                   # and a red product on it
    assert catalogue_page(scene) is None
    scene[:, 210:] = (235, 240, 250)                          # the light page now runs round the product
    assert catalogue_page(scene) is not None



def test_a_catalogue_product_touching_two_opposite_edges_keeps_its_page():
    page = np.full((300, 225, 3), 255, np.uint8)
    page[:, 50:175] = (40, 60, 120)          # a model cut at head and feet, over half the width
    assert catalogue_page(page) is not None   # the page holds only 72% of the edge, but both sides whole
    assert catalogue_page(page.transpose(1, 0, 2).copy()) is not None   # a bag wider than the photo


def test_a_product_small_on_its_page_is_cut_out_and_a_framed_one_is_searched_whole():
    finder = GarmentFinder(runtime="tensorflow", head_sha256="0" * 64)   # a page photo needs no model
    framed = finder.find(catalogue_photo(box=(30, 40, 200, 270)))
    assert [g.group for g in framed] == ["whole photo"]
    small = finder.find(catalogue_photo(box=(100, 120, 150, 200)))   # 50 x 80 of 225 x 300, as if from afar
    assert len(small) == 1 and small[0].group == "product"
    x0, y0, x1, y1 = small[0].box
    assert abs(x0 - 100) <= 3 and abs(y0 - 120) <= 3 and abs(x1 - 150) <= 3 and abs(y1 - 200) <= 3
    crop = garment_pixels(catalogue_photo(box=(100, 120, 150, 200)), small[0])
    assert crop.shape[0] < 100 and crop.shape[1] < 70 and (crop == (200, 30, 40)).all(axis=-1).mean() > 0.6
    assert finder._call is None   # the localiser's model was never loaded


def test_a_drawn_box_is_clipped_and_a_box_or_number_outside_is_refused():
    photo = catalogue_photo()
    assert drawn_box((225, 300), (-10, 5, 100, 400)).box == (0, 5, 100, 300)
    with pytest.raises(GarmentError, match="holds no part of the 225 x 300 photo"):
        drawn_box((225, 300), (300, 300, 400, 400))
    with pytest.raises(GarmentError, match="photo has 1"):
        pick([whole_photo(photo)], 2)


def test_made_backgrounds_and_a_missing_background_package(monkeypatch, tmp_path):
    rng = np.random.default_rng(1)
    kinds = {backgrounds.made_background(rng, 64).std() > 0 for _ in range(8)}
    assert kinds == {True}
    monkeypatch.setitem(backgrounds.PACKAGES, "mate-backgrounds", tmp_path / "absent")
    with pytest.raises(backgrounds.BackgroundsMissingError, match="apt-get install mate-backgrounds"):
        backgrounds.background_paths("train")


def test_a_package_sharing_a_folder_gives_the_photos_dpkg_lists_as_its_own(monkeypatch, tmp_path):
    for package in ("mate-backgrounds", "gnome-backgrounds"):
        monkeypatch.setitem(backgrounds.PACKAGES, package, tmp_path / package)
        (tmp_path / package).mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in ("ours.jpg", "theirs.jpg", "ours.xml"):
        (shared / name).write_bytes(b"")
    lists = tmp_path / "dpkg"
    lists.mkdir()
    monkeypatch.setattr(backgrounds, "DPKG_LISTS", lists)
    for package in backgrounds.LISTED_PACKAGES[:-1]:
        (lists / f"{package}.list").write_text(f"{shared}\n{shared / 'ours.jpg'}\n{shared / 'ours.xml'}\n")
    with pytest.raises(backgrounds.BackgroundsMissingError, match=f"install {backgrounds.LISTED_PACKAGES[-1]}"):
        backgrounds.background_paths("train")
    (lists / f"{backgrounds.LISTED_PACKAGES[-1]}.list").write_text(f"{shared / 'gone.png'}\n")
    with pytest.raises(backgrounds.BackgroundsMissingError, match="lists no photo that is on disk"):
        backgrounds.background_paths("train")
    (lists / f"{backgrounds.LISTED_PACKAGES[-1]}.list").write_text(f"{shared / 'gone.png'}\n{shared / 'theirs.jpg'}\n")
    assert backgrounds.background_paths("train") == [shared / "ours.jpg"] * (len(backgrounds.LISTED_PACKAGES) - 1) + [
        shared / "theirs.jpg"]



def test_weights_of_another_head_are_refused_in_words():
    from fashion_search.models import localiser

    shapes = [(None, 56, 56, 24), (None, 28, 28, 40), (None, 14, 14, 112), (None, 7, 7, 320)]
    heads = [localiser.build_head(shapes, seed) for seed in (1, 2)]
    arrays = localiser.head_arrays(heads)
    again = localiser.heads_from_arrays(arrays, shapes)  # its own: taken, both heads
    assert len(again) == 2 and np.array_equal(again[1].get_layer("classes").get_weights()[0],
                                              heads[1].get_layer("classes").get_weights()[0])
    alone = {name.split("/", 1)[1]: values for name, values in arrays.items() if name.startswith("head0/")}
    assert len(localiser.heads_from_arrays(alone, shapes)) == 1   # one head, as saved before heads were averaged
    arrays.pop("head1/classes/1")
    with pytest.raises(ValueError, match="another localiser head"):
        localiser.heads_from_arrays(arrays, shapes)


def test_the_shipped_localiser_holds_three_heads_that_load():
    import io

    from fashion_search.models import localiser
    from fashion_search.models.localiser_sha256 import HEAD_SHA256
    from fashion_search.models.shipped import checked_bytes

    shapes = [(None, 56, 56, 24), (None, 28, 28, 40), (None, 14, 14, 112), (None, 7, 7, 320)]
    with np.load(io.BytesIO(checked_bytes(localiser.SHIPPED_HEAD, HEAD_SHA256, "make localiser"))) as arrays:
        heads = localiser.heads_from_arrays(dict(arrays), shapes)
    assert len(heads) == 3
    kernels = [head.get_layer("classes").get_weights()[0] for head in heads]
    assert not np.allclose(kernels[0], kernels[1]) and not np.allclose(kernels[1], kernels[2])


def test_the_localiser_answers_the_mean_of_its_heads():
    import keras

    from fashion_search.models import localiser

    inputs = keras.Input((224, 224, 3))
    maps = [keras.layers.Conv2D(channels, 1)(keras.layers.AveragePooling2D(stride)(inputs))
            for channels, stride in ((24, 4), (40, 8), (112, 16), (320, 32))]
    extractor = keras.Model(inputs, maps)
    heads = [localiser.build_head([tuple(t.shape) for t in extractor.outputs], seed) for seed in (1, 2)]
    photo = np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype("float32")
    each = [np.asarray(keras.ops.softmax(head(extractor(photo)))) for head in heads]
    both = np.asarray(localiser.build_localiser(extractor, heads)(photo))
    assert both.shape == (1, 56, 56, localiser.CLASSES)
    assert np.allclose(both, (each[0] + each[1]) / 2, atol=1e-5) and not np.allclose(each[0], each[1], atol=1e-3)
    alone = np.asarray(localiser.build_localiser(extractor, heads[:1])(photo))
    assert np.allclose(alone, each[0], atol=1e-5)


def test_the_localisers_thirds_come_from_the_validation_half_whatever_the_seeds(tmp_path):
    import pandas as pd

    from fashion_search.data import evaluation_split
    from fashion_search.models.localiser_training import SPLIT_SEED, dev_thirds

    types = [f"type{i % 6}" for i in range(300)]
    pd.DataFrame({"id": [str(i) for i in range(300)], "articleType": types}).to_csv(tmp_path / "labels.csv",
                                                                                  index=False)
    training, choosing = dev_thirds(tmp_path)
    halves = evaluation_split(np.array(types), 0.5, SPLIT_SEED)
    test_half = {str(i) for i in np.flatnonzero(halves == "test")}
    assert test_half and not test_half & (set(training["id"]) | set(choosing["id"]))
    assert not set(training["id"]) & set(choosing["id"]) and len(training) == 2 * len(choosing)


def test_heads_of_another_width_load_as_wide_as_they_were_saved():
    from fashion_search.models import localiser

    shapes = [(None, 56, 56, 24), (None, 28, 28, 40), (None, 14, 14, 112), (None, 7, 7, 320)]
    heads = [localiser.build_head(shapes, 1, "wide", width=96, fine_width=48), localiser.build_head(shapes, 2)]
    again = localiser.heads_from_arrays(localiser.head_arrays(heads), shapes)
    assert [h.get_layer("merge_8").filters for h in again] == [96, localiser.HEAD_WIDTH]
    assert [h.get_layer("merge_4").filters for h in again] == [48, localiser.FINE_WIDTH]
    assert np.array_equal(again[0].get_layer("merge_4").get_weights()[0], heads[0].get_layer("merge_4").get_weights()[0])


@pytest.mark.parametrize("options, says", [(["--head-seeds", "3", "3"], "each seed once"),
                                           (["--width", "0"], "at least 1 channel")])
def test_the_localiser_trainer_refuses_impossible_options_before_any_work(tmp_path, options, says):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "fashion_search.models.localiser_training", *options,
                           "--out", str(tmp_path / "heads.npz")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "heads.npz").exists()


def test_the_localiser_trainer_never_overwrites_a_file_that_is_not_a_localiser_s(tmp_path):
    import json
    import subprocess
    import sys

    from fashion_search.models import localiser
    from fashion_search.models.localiser_training import foreign_output

    notes = tmp_path / "heads.json"
    notes.write_text('{"mine": "a user\'s notes"}')
    done = subprocess.run([sys.executable, "-m", "fashion_search.models.localiser_training", "--out",
                           str(tmp_path / "heads.npz")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "heads.json exists and is not a localiser's" in done.stderr
    assert notes.read_text() == '{"mine": "a user\'s notes"}' and not (tmp_path / "heads.npz").exists()

    photo = tmp_path / "photo.npz"
    np.savez(photo, pixels=np.zeros(3))
    assert foreign_output(photo) == photo   # an .npz of someone else's
    (tmp_path / "photo.npz").write_bytes(b"not an npz")
    assert foreign_output(photo) == photo
    shapes = [(None, 56, 56, 24), (None, 28, 28, 40), (None, 14, 14, 112), (None, 7, 7, 320)]
    localiser.save_heads([localiser.build_head(shapes)], tmp_path / "own.npz")
    (tmp_path / "own.json").write_text(json.dumps({"head_sha256": "0" * 64}))
    assert foreign_output(tmp_path / "own.npz") is None and foreign_output(tmp_path / "new.npz") is None
    assert foreign_output(localiser.SHIPPED_HEAD) is None
