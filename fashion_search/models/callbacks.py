"""Training callbacks: retrieval quality on the validation split, and checkpoints that let an
interrupted training continue from its last finished epoch."""
from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from fashion_search import metrics
from fashion_search.exact import exact_search
from fashion_search.io import atomic_path, read_json, write_json, write_text_atomic
from fashion_search.progress import format_seconds

STATE_FILE = "state.json"
LAST_WEIGHTS = "last.weights.h5"
BEST_WEIGHTS = "best.weights.h5"


def gallery_map(features: np.ndarray, codes: np.ndarray, queries: np.ndarray, k: int) -> tuple[float, float]:
    """mAP@k (the report's definition, and min(k, R)) of the ``queries`` rows searching all rows
    of ``features`` by cosine similarity, each query's own row excluded; queries without another
    relevant row are left out."""
    report, standard = gallery_ap(features, codes, queries, k)
    return (float(report.mean()), float(standard.mean())) if len(report) else (0.0, 0.0)


def gallery_ap(features: np.ndarray, codes: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """AP@k per scored query, under the report's definition and min(k, R), as :func:`gallery_map`
    ranks them (the per-query values a paired interval needs)."""
    n_relevant = np.bincount(codes)[codes[queries]] - 1
    scored = n_relevant > 0
    k = min(k, len(codes) - 1)
    ranked, _ = exact_search(features[queries], features, k, "cosine", exclude=queries)
    hits = metrics.relevance(codes[queries], codes, ranked)[scored]
    return (metrics.average_precision_report_per_query(hits, k),
            metrics.average_precision_per_query(hits, n_relevant[scored], k))


def validation_map(features: np.ndarray, codes: np.ndarray, k: int) -> float:
    """mAP@k (the report's definition) of every item against the others (:func:`gallery_map`)."""
    return gallery_map(features, codes, np.arange(len(codes)), k)[0]


class RetrievalValidation(keras.callbacks.Callback):
    """Adds ``val_map_at_<k>`` to the epoch's logs: retrieval on the validation split with the
    embedding model, the measure the best epoch is chosen by."""

    def __init__(self, embedding: keras.Model, dataset, codes: np.ndarray, k: int) -> None:
        super().__init__()
        self.embedding, self.dataset, self.codes, self.k = embedding, dataset, np.asarray(codes), k
        self.key = f"val_map_at_{k}"

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        features = np.concatenate([np.asarray(self.embedding.predict_on_batch(batch)) for batch in self.dataset])
        value = validation_map(features, self.codes, self.k)
        if logs is not None:
            logs[self.key] = value


class TrainingState:
    """The progress of one training, saved in ``folder`` after every epoch."""

    def __init__(self, folder: str | Path, fingerprint: str) -> None:
        self.folder = Path(folder)
        saved = read_json(self.folder / STATE_FILE) if (self.folder / STATE_FILE).is_file() else {}
        if saved.get("fingerprint") != fingerprint:  # made with other parameters: start over
            saved = {}
            shutil.rmtree(self.folder, ignore_errors=True)
        self.fingerprint = fingerprint
        self.epochs_done: int = saved.get("epochs_done", 0)
        self.best: float = saved.get("best", -np.inf)
        self.best_epoch: int | None = saved.get("best_epoch")
        self.stopped_phases: list[str] = saved.get("stopped_phases", [])
        self.seconds: float = saved.get("seconds", 0.0)

    @property
    def has_weights(self) -> bool:
        return self.epochs_done > 0 and (self.folder / LAST_WEIGHTS).is_file()

    def save(self) -> None:
        write_json(self.folder / STATE_FILE, {
            "fingerprint": self.fingerprint, "epochs_done": self.epochs_done, "best": self.best,
            "best_epoch": self.best_epoch, "stopped_phases": self.stopped_phases, "seconds": round(self.seconds, 2)})

    def restore(self, model: keras.Model, with_optimizer: bool) -> None:
        """Load the last epoch's weights, and the optimizer's moments when resuming mid-phase
        (the weights file holds them; a built optimizer of the same shape takes them)."""
        if with_optimizer:
            model.optimizer.build(model.trainable_variables)
        with warnings.catch_warnings():  # another phase's optimizer state is skipped, as it should be
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(self.folder / LAST_WEIGHTS)


class ResumableCheckpoint(keras.callbacks.Callback):
    """After each epoch: save the weights (with the optimizer's state) and the progress; keep the weights of
    the best epoch by ``monitor`` (higher is better); stop the phase after ``patience`` epochs
    without improvement."""

    def __init__(self, state: TrainingState, monitor: str, patience: int, phase: str) -> None:
        super().__init__()
        self.state, self.monitor, self.patience, self.phase = state, monitor, patience, phase
        self.wait = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        folder = self.state.folder
        if value is not None and value > self.state.best:
            self.state.best, self.state.best_epoch, self.wait = float(value), epoch, 0
            with atomic_path(folder / BEST_WEIGHTS) as tmp:
                self.model.save_weights(tmp)
        else:
            self.wait += 1
        with atomic_path(folder / LAST_WEIGHTS) as tmp:
            self.model.save_weights(tmp)
        self.state.epochs_done = epoch + 1
        if self.wait >= self.patience:
            self.model.stop_training = True
            self.state.stopped_phases.append(self.phase)
        self.state.save()


class EpochProgress(keras.callbacks.Callback):
    """One line per finished epoch: loss, the validation measure and its best so far, the
    epoch's time and the most time left (early stopping may end sooner). Goes after
    :class:`ResumableCheckpoint`, whose state holds the best value."""

    def __init__(self, title: str, total_epochs: int, monitor: str, k: int, state: TrainingState) -> None:
        super().__init__()
        self.title, self.total, self.monitor, self.k, self.state = title, total_epochs, monitor, k, state
        self.started = time.monotonic()
        self.durations: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        seconds = time.monotonic() - self.started
        self.durations.append(seconds)
        left = (self.total - epoch - 1) * float(np.mean(self.durations))
        parts = [f"{self.title}: epoch {epoch + 1}/{self.total}"]
        if "loss" in logs:
            parts.append(f"loss {logs['loss']:.4f}")
        if self.monitor in logs:
            parts.append(f"validation mAP@{self.k} {logs[self.monitor]:.4f} (best {self.state.best:.4f})")
        parts.append(f"{format_seconds(seconds)}")
        parts.append(f"at most {format_seconds(left)} left" if left > 0 else "last epoch")
        print(", ".join(parts), flush=True)


def trim_history(path: str | Path, epochs_done: int) -> None:
    """Drop logged epochs that no checkpoint covers (an interruption between the two writes)."""
    path = Path(path)
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    if not lines:
        return
    header, rows = lines[0], lines[1:]
    kept = [row for row in rows if int(float(row.split(",")[0])) < epochs_done]
    write_text_atomic(path, "\n".join([header, *kept]) + "\n")

