"""Where fine-tuning runs (``finetune.devices`` / ``finetune.precision``), checked on the CPU: the
devices and policy chosen, the batch a step takes, mirrored training over two logical CPUs, and
a model trained in mixed precision saved back in float32."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from fashion_search.params import ConfigError
from fashion_search.params_file import parse_params
from fashion_search.pipeline.devices import (CPU, DevicesError, choose_devices, device_names, float32_copy,
                                             precision_for, training_on)

GPUS = ["/device:GPU:0", "/device:GPU:1", "/device:GPU:2"]


def test_auto_takes_every_gpu_and_mixed_precision_there_and_the_cpu_in_float32_without():
    assert device_names("auto", []) == [CPU] and precision_for("auto", [CPU]) == "float32"
    assert device_names("auto", GPUS) == GPUS and precision_for("auto", GPUS) == "mixed_float16"
    assert device_names(2, GPUS) == GPUS[:2] and device_names("cpu", GPUS) == [CPU]
    assert precision_for("float32", GPUS) == "float32" and precision_for("mixed_float16", [CPU]) == "mixed_float16"


def test_asking_for_more_gpus_than_there_are_says_so():
    with pytest.raises(DevicesError, match="asks for 2 GPUs, but TensorFlow sees 1"):
        device_names(2, GPUS[:1])


def test_on_this_cpu_training_runs_as_before_one_device_float32_the_batch_unchanged():
    chosen = choose_devices("auto", "auto")
    assert chosen.devices == (CPU,) and chosen.precision == "float32" and chosen.replicas == 1
    assert chosen.global_batch(32) == 32 and not chosen.on_gpu and chosen.describe() == "the CPU, float32"


def test_mixed_precision_computes_in_float16_keeps_float32_outputs_and_is_saved_in_float32():
    chosen = choose_devices("cpu", "mixed_float16")
    with training_on(chosen):
        inputs = keras.Input((8,))
        hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(4, name="out", dtype="float32")(hidden))
    assert keras.mixed_precision.global_policy().name == "float32"  # restored on the way out
    assert model.get_layer("hidden").compute_dtype == "float16" and model.get_layer("hidden").kernel.dtype == "float32"
    assert model.get_layer("out").compute_dtype == "float32"
    batch = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    copy = float32_copy(model)
    assert all(layer.dtype_policy.name == "float32" for layer in copy.layers)
    np.testing.assert_allclose(copy.predict_on_batch(batch), model.predict_on_batch(batch), atol=2e-2)
    assert float32_copy(copy) is copy


def test_two_devices_train_mirrored_and_a_step_takes_both_shares():
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from fashion_search.pipeline.devices import TrainingDevices, strategy_for, training_on
        names = ["/cpu:0", "/cpu:1"]
        chosen = TrainingDevices(strategy_for(names), tuple(names), "float32")
        assert type(chosen.strategy).__name__ == "MirroredStrategy" and chosen.replicas == 2
        batch = chosen.global_batch(4)
        with training_on(chosen):
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        x, y = np.random.default_rng(0).normal(size=(16, 3)).astype("float32"), np.arange(16) % 2
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
        history = model.fit(data, epochs=1, verbose=0)
        print("replicas", chosen.replicas, "batch", batch, "loss", history.history["loss"][0])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    words = done.stdout.split()
    assert words[:4] == ["replicas", "2", "batch", "8"] and np.isfinite(float(words[5]))


@pytest.mark.parametrize("block, message", [({"precision": "bfloat16"}, "finetune.precision"),
                                            ({"devices": 0}, "finetune.devices"),
                                            ({"devices": "gpu"}, "finetune.devices"),
                                            ({"devices": True}, "finetune.devices")])
def test_bad_device_settings_are_refused(raw_params, block, message):
    with pytest.raises(ConfigError, match=message):
        parse_params({**raw_params, "finetune": {**raw_params["finetune"], **block}})


def test_device_settings_are_read(raw_params):
    finetune = parse_params({**raw_params, "finetune": {"devices": 2, "precision": "mixed_float16"}}).finetune
    assert (finetune.devices, finetune.precision) == (2, "mixed_float16")
    default = parse_params(raw_params).finetune
    assert (default.devices, default.precision) == ("auto", "auto")


def test_a_run_asking_for_gpus_that_are_not_there_stops_before_any_stage(params_file, tmp_path):
    done = subprocess.run([sys.executable, "-m", "fashion_search.cli", "run", "--params", str(params_file),
                           "--set", "finetune.devices=2", "--outputs", str(tmp_path / "outputs")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "'finetune.devices' asks for 2 GPUs, but TensorFlow sees 0" in done.stderr
    assert not (tmp_path / "outputs").exists()


def test_device_settings_change_only_the_models_of_recipes_that_train_a_backbone(raw_params):
    from fashion_search.layout import variants
    from fashion_search.pipeline.finetune import model_fingerprint

    raw = {**raw_params, "finetune": {**raw_params["finetune"], "recipes": ["softmax", "fused"]}}
    plain, on_gpus = parse_params(raw), parse_params({**raw, "finetune": {**raw["finetune"], "devices": 2}})
    prints = {v.recipe: (model_fingerprint(v, plain), model_fingerprint(w, on_gpus))
              for v, w in zip(variants(plain), variants(on_gpus))}
    assert prints["softmax"][0] != prints["softmax"][1] and prints["fused"][0] == prints["fused"][1]
