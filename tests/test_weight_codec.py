"""Trained weights stored small: what is read back is within half a step of what was stored."""
import zipfile

import numpy as np
import pytest

from fashion_search.models.weight_codec import SCALE, decoded, encoded, output_axis, quantised, save_arrays


def test_output_channels_are_the_last_axis_except_for_a_depthwise_kernel():
    assert output_axis(np.zeros((1, 1, 112, 672))) == 3
    assert output_axis(np.zeros((5, 5, 672, 1))) == 2
    assert output_axis(np.zeros((1280, 256))) == 1


@pytest.mark.parametrize("shape", [(1, 1, 16, 24), (3, 3, 24, 1), (40, 8)])
def test_a_kernel_comes_back_within_half_a_step_of_each_channel(shape):
    rng = np.random.default_rng(0)
    axis = output_axis(np.zeros(shape))
    spread = rng.uniform(0.01, 2.0, size=shape[axis]).reshape([-1 if a == axis else 1 for a in range(len(shape))])
    kernel = (rng.normal(size=shape) * spread).astype(np.float32)
    stored = encoded(kernel, "k", step=0.5)
    assert stored["k"].dtype == np.int8 and stored[f"k/{SCALE}"].shape == (shape[axis],)
    _, steps = quantised(kernel, 0.5)
    error = np.abs(decoded(stored, "k") - kernel)
    assert (error <= 0.5 * steps.reshape(spread.shape) * 1.001).all()
    assert error.max() > 0   # it is rounded: not a copy


def test_a_constant_or_empty_channel_comes_back():
    kernel = np.zeros((6, 3), np.float32)
    kernel[:, 0] = 0.5                    # constant: no spread to take a step from
    kernel[:, 1] = [0, 0, 0, 0, 0, 9.0]   # one large value among zeros
    back = decoded(encoded(kernel, "k", step=0.6), "k")
    np.testing.assert_allclose(back[:, 0], 0.5, atol=0.5 / 127)
    _, steps = quantised(kernel, 0.6)
    assert np.abs(back[:, 1] - kernel[:, 1]).max() <= steps[1] / 2 * 1.001
    assert (back[:, 2] == 0).all()


def test_a_change_is_stored_and_added_back_to_its_start():
    rng = np.random.default_rng(1)
    start = rng.normal(size=(1, 1, 32, 64)).astype(np.float32)
    change = 0.1 * rng.normal(size=start.shape).astype(np.float32)
    stored = encoded(start + change, "top/layer/0", step=0.8, start=start)
    back = decoded(stored, "top/layer/0", start)
    assert np.abs(back - (start + change)).max() <= 0.4 * change.std(axis=(0, 1, 2)).max() * 1.01
    assert np.abs(decoded(stored, "top/layer/0")).max() < np.abs(start).max()   # without its start: only the change


def test_a_bias_is_kept_as_float16_and_as_its_change_when_it_has_a_start():
    bias = np.linspace(-1, 1, 10).astype(np.float32)
    stored = encoded(bias, "b", step=0.6)
    assert list(stored) == ["b"] and stored["b"].dtype == np.float16
    np.testing.assert_allclose(decoded(stored, "b"), bias, atol=1e-3)
    start = np.full(10, 3.0, np.float32)
    np.testing.assert_allclose(decoded(encoded(bias + start, "b", 0.6, start), "b", start), bias + start, atol=1e-3)


def test_saved_arrays_are_an_lzma_npz_that_numpy_reads(tmp_path):
    arrays = {"a/0": np.arange(6, dtype=np.int8).reshape(2, 3), "a/0/scale": np.ones(3, np.float32)}
    path = tmp_path / "weights.npz"
    save_arrays(path, arrays)
    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_LZMA}
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}   # no file times
    with np.load(path) as loaded:
        assert sorted(loaded.files) == sorted(arrays)
        np.testing.assert_array_equal(loaded["a/0"], arrays["a/0"])
    assert [p.name for p in tmp_path.iterdir()] == ["weights.npz"]   # no temporary file left beside it
    again = tmp_path / "again" / "weights.npz"
    save_arrays(again, arrays)
    assert again.read_bytes() == path.read_bytes()   # the same arrays, the same bytes
