"""The table of prepared models the fine-tune notebook shows: one row per usable model."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

SUMMARY_COLUMNS = ("model", "weights", "weights_used", "image_size", "feature_dim", "trained_on", "epochs",
                   "best_epoch", "best_val_map", "train_seconds")


def summary_table(manifests: dict[str, dict]) -> pd.DataFrame:
    """One row per usable model for the notebook: counts as whole numbers, the validation mAP to
    four places, seconds to one, lists joined, the weights' source without its path, and "-"
    where a frozen model has nothing to say."""
    rows = [{"model": name, **manifest} for name, manifest in manifests.items() if manifest.get("available")]
    table = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if any(c in row for row in rows)])
    formats = {"epochs": "{:.0f}", "best_epoch": "{:.0f}", "best_val_map": "{:.4f}", "train_seconds": "{:.1f}"}

    def shown(column: str, value: object) -> str:
        if isinstance(value, (list, tuple)):
            return ", ".join(map(str, value))
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "-"
        if column == "weights_used":  # where from and which file, without the path (the manifest keeps it)
            source, _, rest = str(value).partition(": ")
            checksum = re.search(r"sha256 \w+", rest)
            return f"{source} ({checksum.group()})" if checksum else source
        return formats.get(column, "{}").format(value)

    return pd.DataFrame({column: [shown(column, v) for v in table[column]] for column in table.columns})
