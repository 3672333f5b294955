"""04's comparison of distances: the research report planned cosine and Jaccard similarity
against its Euclidean distance. For every model, each distance's mAP@k with its bootstrap
interval, and its paired difference from Euclidean on the same queries, with its interval.

Jaccard is the weighted form, ``Σ min(q, g) / Σ max(q, g)``: it needs non-negative features
(average-pooled ReLU activations: the frozen and softmax recipes' pooling layer). A model whose
features have negative values (cosface's L2-normalised embedding) is not ranked by it; the
report says so, and why. The engine serves Jaccard only if it wins: :func:`jaccard_verdict`
says whether it does. Nothing is measured here; :mod:`.evaluate` ranks and scores.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fashion_search import metrics
from fashion_search.io import write_text_atomic
from fashion_search.params import Params
from fashion_search.pipeline.report import DEFINITIONS, GAIN_DEFINITIONS, MIN_KR, PROTOCOL_TITLES, is_available
from fashion_search.pipeline.tables import estimate, markdown_table, paired_estimate

BASELINE = "euclidean"
DISTANCES_FILE = "distances.md"
NOT_APPLICABLE_FILE = "not_applicable.csv"


def paired_difference(per_query: dict[tuple[str, str, str, str], pd.DataFrame], model: str, protocol: str,
                      relevance: str, distance: str, against: str, column: str) -> dict[str, float] | None:
    """Mean per-query difference of ``column`` (e.g. ``ap_report@10``) between two distances of
    one model, on the same queries, with its 95% paired bootstrap interval; ``None`` when either
    distance was not scored."""
    ours, theirs = per_query.get((model, protocol, relevance, distance)), per_query.get(
        (model, protocol, relevance, against))
    if ours is None or theirs is None:
        return None
    if ours["id"].tolist() != theirs["id"].tolist():
        raise ValueError(f"{model}: {distance} and {against} were scored on different queries")
    mean, low, high = metrics.paired_difference(ours[column].to_numpy(), theirs[column].to_numpy())
    return {"mean": mean, "low": low, "high": high}


def distances_table(summary: pd.DataFrame, per_query: dict[tuple[str, str, str, str], pd.DataFrame],
                    manifests: dict[str, dict], distances: tuple[str, ...], protocol: str, relevance: str, k: int,
                    refused: pd.DataFrame) -> pd.DataFrame:
    """One row per model and distance: mAP@k under both definitions with 95% bootstrap intervals,
    and the paired difference from Euclidean; a distance the model's features cannot take says so."""
    rows = []
    refused_pairs = set(zip(refused["model"], refused["distance"])) if len(refused) else set()
    for model, manifest in manifests.items():
        if not is_available(manifest):
            continue
        for distance in distances:
            row = {"model": model, "distance": distance}
            part = summary[(summary["model"] == model) & (summary["distance"] == distance)
                           & (summary["protocol"] == protocol) & (summary["relevance"] == relevance)
                           & (summary["k"] == k)]
            for definition, label in GAIN_DEFINITIONS:
                score = f"mAP@{k}{label} [95% CI]"
                change = f"− {BASELINE}, mAP@{k}{label} [paired 95% CI]"
                if not len(part):
                    row[score] = "not applicable" if (model, distance) in refused_pairs else "not measured"
                    row[change] = ""
                    continue
                value = part.iloc[0]
                row[score] = estimate(value[f"map_{definition}"], value[f"map_{definition}_low"],
                                      value[f"map_{definition}_high"])
                gain = (paired_difference(per_query, model, protocol, relevance, distance, BASELINE,
                                          f"ap_{definition}@{k}") if distance != BASELINE else None)
                row[change] = (paired_estimate(gain["mean"], gain["low"], gain["high"]) if gain
                               else "(the baseline)" if distance == BASELINE else "")
            rows.append(row)
    return pd.DataFrame(rows)


def jaccard_verdict(per_query: dict[tuple[str, str, str, str], pd.DataFrame], models: list[str],
                    distances: tuple[str, ...], protocol: str, relevance: str, k: int,
                    refused: pd.DataFrame) -> tuple[bool, str]:
    """Whether weighted Jaccard wins, and the sentence that says so: it wins for a model when its
    paired 95% interval of AP@k (the report's definition) lies above zero against every other
    distance measured (cosine included: what the engine serves, as the inner product of
    L2-normalised vectors); it wins when it does so for at least one model whose features it can rank."""
    if "jaccard" not in distances:
        return False, "Jaccard was not measured (`evaluate.distances` does not list it)."
    column, said, winners = f"ap_report@{k}", [], []
    against = [d for d in distances if d != "jaccard"]
    for model in models:
        gains = {d: paired_difference(per_query, model, protocol, relevance, "jaccard", d, column) for d in against}
        if not against or any(g is None for g in gains.values()):
            continue
        won = all(g["low"] > 0 for g in gains.values())
        winners += [model] if won else []
        said.append(f"{model}: " + ", ".join(f"{g['mean']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}] against {d}"
                                             for d, g in gains.items()))
    refused_models = sorted(set(refused.loc[refused["distance"] == "jaccard", "model"])) if len(refused) else []
    if not said:
        return False, ("Jaccard ranked none of these models' features" +
                       (f" ({', '.join(refused_models)}: negative values)." if refused_models else "."))
    verdict = (f"**Jaccard wins for {', '.join(winners)}**" if winners else
               "**Jaccard does not win for any model**") + (
        f" against every other distance ({PROTOCOL_TITLES[protocol].split(':')[0]}, relevant = same {relevance}; "
        "winning needs a paired interval above zero against each, cosine included, which the engine serves; "
        "paired differences of "
        f"AP@{k}, the report's definition, with 95% intervals: {'; '.join(said)}).")
    if refused_models:
        verdict += f" Not applicable to {', '.join(refused_models)}: its features have negative values."
    verdict += (" The engine keeps its distance." if not winners else
                " The engine does not serve it yet: that is a change to the engine, for non-negative features only.")
    return bool(winners), verdict


def distances_markdown(summary: pd.DataFrame, per_query: dict[tuple[str, str, str, str], pd.DataFrame],
                       manifests: dict[str, dict], params: Params, refused: pd.DataFrame) -> str:
    """``distances.md``: the distances side by side per protocol and relevance, at the largest k,
    what Jaccard needs of a feature, which models it could not rank and why, and whether it wins."""
    distances, k = params.evaluate.distances, max(params.evaluate.ks)
    lines = ["# Distances compared", "",
             f"Each model's test queries ranked by each distance in `evaluate.distances` ({', '.join(distances)}); "
             f"mAP@{k} with its 95% bootstrap interval over queries, and its paired difference from {BASELINE} "
             "distance on the same queries (an interval above zero: better than Euclidean, beyond chance). "
             f"mAP@{k}: {DEFINITIONS['report']}; {MIN_KR}: {DEFINITIONS['standard']}.", ""]
    if "jaccard" in distances:
        lines += ["Jaccard here is the weighted Jaccard distance 1 − Σᵢ min(qᵢ, gᵢ) / Σᵢ max(qᵢ, gᵢ). It needs "
                  "non-negative features, such as average-pooled ReLU activations (the frozen and softmax "
                  "recipes' pooling layer). Unlike cosine, it also sees a vector's overall size: twice the same "
                  "vector is at distance 0.5. Features with negative values, such as cosface's L2-normalised "
                  "embedding, are not ranked by it. (On L2-normalised features cosine and Euclidean rank alike: "
                  "‖q − g‖² = 2 − 2 cos(q, g).)", ""]
    models = [m for m, manifest in manifests.items() if is_available(manifest)]
    for protocol in dict.fromkeys(summary["protocol"]):
        for relevance in params.evaluate.relevance:
            lines += [f"## {PROTOCOL_TITLES.get(protocol, protocol).capitalize()}; relevant = same {relevance}", "",
                      markdown_table(distances_table(summary, per_query, manifests, distances, protocol, relevance,
                                                     k, refused)), ""]
    for _, row in refused.drop_duplicates("model").iterrows():
        lines += [f"*{row['model']}, {row['distance']}: not applicable: {row['reason']}.*", ""]
    if len(summary) and models:
        protocol, relevance = summary["protocol"].iloc[0], params.evaluate.relevance[0]
        lines += [jaccard_verdict(per_query, models, distances, protocol, relevance, k, refused)[1], ""]
    return "\n".join(lines)


def write_distances_report(summary: pd.DataFrame, per_query: dict[tuple[str, str, str, str], pd.DataFrame],
                           manifests: dict[str, dict], params: Params, refused: pd.DataFrame,
                           folder: Path) -> Path:
    """Write ``distances.md`` into ``folder``; return its path."""
    path = Path(folder) / DISTANCES_FILE
    write_text_atomic(path, distances_markdown(summary, per_query, manifests, params, refused))
    return path


def not_applicable(folder: Path) -> pd.DataFrame:
    """The (model, distance, reason) rows 04 could not rank (:data:`NOT_APPLICABLE_FILE`)."""
    path = Path(folder) / NOT_APPLICABLE_FILE
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["model", "distance", "reason"])

