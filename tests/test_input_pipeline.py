import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fashion_search.images import as_rgb, fit_to_square, read_photo
from fashion_search.backbone_specs import get_spec
from fashion_search.pipeline.input_pipeline import make_dataset, to_model_input


def test_grayscale_becomes_three_channels_at_the_backbone_size():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    batch = to_model_input(images, 40, lambda x: x / 255.0).numpy()
    assert batch.shape == (2, 40, 40, 3)
    np.testing.assert_allclose(batch[..., 0], batch[..., 2])  # gray: all channels equal


def test_backbone_preprocessing_is_applied():
    images = np.full((1, 28, 28), 255, np.uint8)
    # ResNet50's caffe preprocessing subtracts the ImageNet mean per BGR channel.
    batch = to_model_input(images, 32, get_spec("resnet50").preprocess).numpy()
    np.testing.assert_allclose(batch[0, 0, 0], [255 - 103.939, 255 - 116.779, 255 - 123.68], rtol=1e-5)


def test_dataset_batches_images_and_labels_in_order():
    images = np.zeros((5, 28, 28), np.uint8)
    labels = np.arange(5)
    batches = list(make_dataset(images, 32, lambda x: x, batch_size=2, labels=labels))
    assert [len(y) for _, y in batches] == [2, 2, 1]
    assert np.concatenate([y.numpy() for _, y in batches]).tolist() == [0, 1, 2, 3, 4]
    assert batches[0][0].shape == (2, 32, 32, 3)


def test_photo_is_padded_to_a_white_square_and_resized(tmp_path):
    from PIL import Image

    from fashion_search.pipeline.input_pipeline import load_photo

    path = tmp_path / "tall.png"
    Image.new("RGB", (20, 40), (200, 0, 0)).save(path)  # 20 wide, 40 tall, red
    square = load_photo(tf.constant(str(path)), 32).numpy()
    assert square.shape == (32, 32, 3)
    assert (square[16, 0] >= 250).all() and (square[16, -1] >= 250).all()   # white side bands
    np.testing.assert_allclose(square[16, 16], [200, 0, 0], atol=3)          # the photo in the middle


def test_photo_paths_and_pixel_arrays_give_the_same_batches(tmp_path):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (3, 24, 24, 3), dtype=np.uint8)
    paths = []
    for i, image in enumerate(pixels):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    from_files = next(iter(make_dataset(np.array(paths), 24, lambda x: x, batch_size=3))).numpy()
    from_arrays = next(iter(make_dataset(pixels, 24, lambda x: x, batch_size=3))).numpy()
    np.testing.assert_allclose(from_files, from_arrays, atol=1)


def test_datasets_run_without_the_autotuner():
    # its background thread slows the model beside a live iterator on small machines
    dataset = make_dataset(np.zeros((4, 8, 8), np.uint8), 8, lambda x: x, 2)
    assert dataset.options().autotune.enabled is False


def photos_that_differ_in_how_they_are_read(folder) -> list:
    """A wide JPEG, a transparent PNG, a TIFF and a JPEG whose EXIF says to rotate it."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (90, 150, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "wide.jpg", quality=90)
    rgba = np.dstack([noise[:60, :40], np.where(np.arange(40) < 20, 0, 255)[None, :].repeat(60, 0)]).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(folder / "cutout.png")
    Image.fromarray(noise[:70, :50]).save(folder / "scan.tif")
    rotated = Image.fromarray(noise[:40, :100])
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rotated.save(folder / "rotated.jpg", exif=exif, quality=95)
    return [str(folder / name) for name in ("wide.jpg", "cutout.png", "scan.tif", "rotated.jpg")]


@pytest.mark.parametrize("size", [64, 224])
def test_training_and_query_framing_give_the_same_pixels_for_a_photo(tmp_path, size):
    """A photo file reaches a model through the same reader and framing in the notebooks'
    input pipeline as in the search engine's queries: identical pixels."""
    paths = photos_that_differ_in_how_they_are_read(tmp_path)
    batch = next(iter(make_dataset(np.array(paths), size, lambda x: x, batch_size=len(paths)))).numpy()
    for framed, path in zip(batch, paths):
        query = fit_to_square(read_photo(path), size)
        assert np.abs(framed - query.astype(np.float32)).max() == 0, path


@pytest.mark.parametrize("size", [32, 75, 128, 224])
def test_training_and_query_framing_agree_within_one_level_for_stored_images(size):
    """Stored pixels (Fashion-MNIST) are resized in TensorFlow for training and by the
    engine's framing for queries: at most one grey level apart."""
    images = np.random.default_rng(size).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    batch = to_model_input(images, size, lambda x: x).numpy()
    for trained, image in zip(batch, images):
        assert np.abs(trained - fit_to_square(as_rgb(image), size).astype(np.float32)).max() <= 1.0
