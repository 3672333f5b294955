import keras
import numpy as np
import pandas as pd
import pytest

from fashion_search.data.catalog import Catalog
from fashion_search.params import FinetuneParams
from fashion_search.models.recipes import CosFaceLoss, CosineClassifier, build_recipe


def small_backbone() -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.Conv2D(6, 3, name="c2")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="pool")(x))


def test_cosface_loss_is_cross_entropy_of_scaled_margin_cosines():
    cosines = np.array([[0.9, 0.1, -0.2]], np.float32)
    loss = float(CosFaceLoss(scale=10.0, margin=0.3)(np.array([0]), cosines))
    logits = 10.0 * np.array([0.9 - 0.3, 0.1, -0.2])
    expected = -logits[0] + np.log(np.exp(logits).sum())
    assert loss == pytest.approx(expected, rel=1e-5)
    # the margin makes the loss larger than plain normalised softmax for the same cosines
    assert loss > float(CosFaceLoss(scale=10.0, margin=0.0)(np.array([0]), cosines))


def test_cosine_classifier_outputs_cosines():
    layer = CosineClassifier(5)
    out = np.asarray(layer(np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)))
    assert out.shape == (3, 5) and (np.abs(out) <= 1 + 1e-5).all()
    direction = np.asarray(layer.directions)[:, 2]
    same = np.asarray(layer(direction[None, :] * 7.0))  # any length: the cosine with itself is 1
    assert same[0, 2] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("recipe, outputs", [("softmax", ["articleType"]), ("cosface", ["articleType"]),
                                             ("multitask", ["articleType", "baseColour"])])
def test_recipes_train_one_head_per_column_and_embed_without_augmentation(recipe, outputs):
    params = FinetuneParams(embedding_dim=12)
    classes = {"articleType": 4, "baseColour": 3}
    models = build_recipe(recipe, small_backbone(), {c: classes[c] for c in outputs}, params, seed=0)
    images = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
    predicted = models.training.predict_on_batch(images)
    assert sorted(predicted) == outputs and all(predicted[c].shape == (2, classes[c]) for c in outputs)
    embedded = np.asarray(models.embedding.predict_on_batch(images))
    if recipe == "softmax":
        assert embedded.shape == (2, 6)  # the pooled features
    else:
        assert embedded.shape == (2, 12)
        np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, rtol=1e-5)
    # inference is deterministic: augmentation and dropout are off in the embedding model
    np.testing.assert_allclose(embedded, models.embedding.predict_on_batch(images), rtol=1e-6)


def tiny_catalog(n_per_class: int = 6) -> Catalog:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), n_per_class)
    images = np.array([np.full((16, 16, 3), 60 * label, np.uint8) + rng.integers(0, 30, (16, 16, 3), dtype=np.uint8)
                       for label in labels])
    split = np.tile(["train", "train", "train", "train", "validation", "validation"], 3)
    items = pd.DataFrame({"id": [str(i) for i in range(len(labels))], "label": labels,
                          "articleType": [f"t{v}" for v in labels],
                          "baseColour": ["Red" if i % 2 else "Blue" for i in range(len(labels))], "split": split})
    return Catalog(items, images, "articleType")


def test_interrupted_training_continues_from_its_last_epoch(tmp_path, monkeypatch):
    from fashion_search.models import callbacks
    from fashion_search.pipeline import finetune

    params = FinetuneParams(recipes=("cosface",), frozen_epochs=2, unfrozen_epochs=3, batch_size=6,
                            patience=10, embedding_dim=8, monitor_k=2, augment=False)
    catalog = tiny_catalog()
    epochs_run = []
    original = callbacks.ResumableCheckpoint.on_epoch_end

    def interrupting(self, epoch, logs=None):
        original(self, epoch, logs)
        epochs_run.append(epoch)
        if epoch == 2 and len(epochs_run) == 3:
            raise KeyboardInterrupt  # as if the machine went down after the third epoch

    monkeypatch.setattr(callbacks.ResumableCheckpoint, "on_epoch_end", interrupting)
    with pytest.raises(KeyboardInterrupt):
        finetune.train_recipe("cosface", small_backbone(), catalog, 16, lambda x: x / 255.0, params,
                              tmp_path, seed=0, fingerprint="same")
    assert epochs_run == [0, 1, 2]
    state = callbacks.TrainingState(tmp_path / finetune.CHECKPOINT_DIR, "same")
    assert state.epochs_done == 3 and state.has_weights

    _, history, _ = finetune.train_recipe("cosface", small_backbone(), catalog, 16, lambda x: x / 255.0, params,
                                          tmp_path, seed=0, fingerprint="same")
    assert epochs_run == [0, 1, 2, 3, 4]  # the second run trained epochs 3 and 4 only
    assert history["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert history["phase"].tolist() == ["frozen"] * 2 + ["unfrozen"] * 3
    assert history["val_map_at_2"].between(0, 1).all()


def test_a_checkpoint_of_other_parameters_is_not_resumed(tmp_path):
    from fashion_search.models import callbacks

    folder = tmp_path / "checkpoint"
    state = callbacks.TrainingState(folder, "first")
    state.epochs_done = 4
    state.save()
    (folder / callbacks.LAST_WEIGHTS).write_bytes(b"weights")
    assert callbacks.TrainingState(folder, "first").epochs_done == 4
    assert callbacks.TrainingState(folder, "second").epochs_done == 0
    assert not (folder / callbacks.LAST_WEIGHTS).exists()


def test_validation_map_rewards_embeddings_that_group_the_classes():
    from fashion_search.models.callbacks import validation_map

    codes = np.array([0, 0, 1, 1])
    grouped = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    mixed = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9]], np.float32)
    assert validation_map(grouped, codes, 1) == pytest.approx(1.0)
    assert validation_map(mixed, codes, 1) == pytest.approx(0.0)


def test_resuming_mid_phase_restores_the_optimizer_moments(tmp_path):
    from fashion_search.models import callbacks

    def compiled() -> keras.Model:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        return model

    trained = compiled()
    trained.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=2, verbose=0)
    state = callbacks.TrainingState(tmp_path / "checkpoint", "same")
    checkpoint = callbacks.ResumableCheckpoint(state, "val_map_at_10", patience=5, phase="frozen")
    checkpoint.set_model(trained)
    checkpoint.on_epoch_end(1, {"val_map_at_10": 0.5})
    resumed = compiled()
    callbacks.TrainingState(tmp_path / "checkpoint", "same").restore(resumed, with_optimizer=True)
    for saved, loaded in zip(trained.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_allclose(np.asarray(loaded), np.asarray(saved))
    assert int(np.asarray(resumed.optimizer.iterations)) == 2
