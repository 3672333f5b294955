"""The report's tables: mAP in the report's layout, the backbone × recipe comparison, per category.

Everything here turns metrics (:mod:`.evaluate`'s long-form summary) into Markdown and CSV;
nothing is measured here.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fashion_search import metrics
from fashion_search.data.catalog import Catalog
from fashion_search.io import write_text_atomic
from fashion_search.layout import RunLayout
from fashion_search.params import Params
from fashion_search.pipeline.tables import interval_text, markdown_table, paired_estimate

HEADLINE_FILE = "headline.md"
MIN_KR = "(÷min(k,R))"  # mAP@k with the min(k, relevant items) denominator, named by its formula
PROTOCOL_TITLES = {
    "catalogue": "catalogue protocol: each test item searches the whole catalogue (itself excluded), as the engine does",
    "test split": "test-split protocol (the report's): each test item searches the other test items",
}
DEFINITIONS = {
    "report": "mean of precision@i over the ranks i ≤ k that hold a relevant item (the report's)",
    "standard": "sum of precision@i at relevant ranks i ≤ k, divided by min(k, relevant items)",
}


def column_title(manifest: dict) -> str:
    """A column header that says which weights and recipe produced the numbers."""
    weights = "ImageNet" if manifest["weights"] == "imagenet" else "random weights"
    return f"{manifest['backbone']} {manifest.get('recipe', 'frozen')} ({weights}, {manifest['image_size']} px)"


def is_available(manifest: dict) -> bool:
    """Whether the model behind ``manifest`` could be built (its weights were found)."""
    return manifest.get("available", True)


def unavailable_note(manifests: dict[str, dict]) -> str:
    """One short paragraph for the backbones that were asked for but whose weights were not
    found: what is missing and how to get it; empty when every backbone was built."""
    missing: dict[str, dict] = {}  # backbone → the manifest of its first model
    for manifest in manifests.values():
        if not is_available(manifest):
            missing.setdefault(manifest["backbone"], manifest)
    if not missing:
        return ""
    cached = [m["cache_file"] for m in missing.values() if m.get("cache_file")]  # one fix for all of these
    fixes = [f"copy {', '.join(cached)} into ~/.keras/models/ (or run once with internet)"] if cached else []
    fixes += [f"{backbone}: {m.get('hint', 'see 02_finetune')}" for backbone, m in missing.items()
              if not m.get("cache_file")]
    return (f"Not compared, because their ImageNet weights were not found: {', '.join(missing)}. "
            f"To add them, {'; '.join(fixes)}; then run again.")


KEYS = ["protocol", "relevance", "definition", "distance"]


def map_tables(summary: pd.DataFrame, manifests: dict[str, dict], ks: tuple[int, ...],
               relevances: tuple[str, ...], distances: tuple[str, ...]) -> pd.DataFrame:
    """The report's layout: rows Top k, one column per model whose weights were found, one
    table per protocol, relevance, definition and distance."""
    frames = []
    for protocol in dict.fromkeys(summary["protocol"]):
        for relevance in relevances:
            for definition in DEFINITIONS:
                for distance in distances:
                    table = pd.DataFrame({"protocol": protocol, "relevance": relevance, "definition": definition,
                                          "distance": distance, "rank": [f"Top {k}" for k in ks]})
                    for model, manifest in manifests.items():
                        if not is_available(manifest):
                            continue
                        rows = summary[(summary["model"] == model) & (summary["distance"] == distance)
                                       & (summary["relevance"] == relevance) & (summary["protocol"] == protocol)]
                        values = rows.set_index("k")[f"map_{definition}"].reindex(list(ks)).to_numpy()
                        # a distance the features cannot take (Jaccard on negative values): n/a
                        table[column_title(manifest)] = [f"{v:.4f}" if pd.notna(v) else "n/a" for v in values]
                    frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*KEYS, "rank"])


def map_tables_markdown(tables: pd.DataFrame, notes: list[str], missing: str = "") -> str:
    """Markdown with one table per relevance, definition and distance, preceded by ``notes``;
    ``missing`` (the unavailable backbones' note) once, at the end."""
    lines = ["# mAP@k", "", *notes, ""]
    for (protocol, relevance, definition, distance), table in tables.groupby(KEYS, sort=False):
        lines += [f"## {protocol.capitalize()} protocol; relevant = same {relevance}; {definition} definition, "
                  f"{distance} distance", "",
                  f"mAP@k: {DEFINITIONS[definition]}.", "", _table_body(table), ""]
    return "\n".join(lines + ([f"*{missing}*", ""] if missing else []))


def _table_body(table: pd.DataFrame) -> str:
    """One report-layout table without its key columns, as Markdown."""
    return markdown_table(table.drop(columns=KEYS).rename(columns={"rank": ""}))


NON_MONOTONE = ("Top k is the report's mAP@k: per query, the mean precision at the ranks within the top k that "
                "hold a relevant item. It is not a running total, so it can fall from Top 5 to Top 10 (the report's "
                "own ResNet50: 0.8550, then 0.8433); results.md also has the min(k, relevant) form, which "
                "punishes missed items, and 95% intervals.")


def headline_markdown(tables: pd.DataFrame, missing: str) -> str:
    """The run's result in a few lines: the first report-layout table (the first protocol, the
    report's definition, the first relevance and distance) and the unavailable backbones' note."""
    if tables.empty:
        return "\n".join(["No model could be evaluated.", "", *([missing, ""] if missing else [])])
    first = tables.iloc[0]
    table = tables[(tables["protocol"] == first["protocol"]) & (tables["relevance"] == first["relevance"])
                   & (tables["definition"] == "report") & (tables["distance"] == first["distance"])]
    lines = [f"mAP@k, {PROTOCOL_TITLES.get(first['protocol'], first['protocol'])} (the report's definition; "
             f"relevant = same {first['relevance']}; {first['distance']} distance):", "", _table_body(table), "",
             NON_MONOTONE, ""]
    return "\n".join(lines + ([missing, ""] if missing else []))


def comparison_table(summary: pd.DataFrame, manifests: dict[str, dict], relevance: str, distance: str,
                     ks: tuple[int, ...], protocol: str = "catalogue") -> pd.DataFrame:
    """One row per model whose weights were found: training time, mAP@k under both definitions,
    precision@k and recall@k."""
    rows = []
    for model, manifest in manifests.items():
        if not is_available(manifest):
            continue
        row = {"backbone": manifest["backbone"], "recipe": manifest.get("recipe", "frozen"),
               "size": manifest["image_size"],
               "training (min)": f"{manifest['train_seconds'] / 60:.1f}" if "train_seconds" in manifest else "-"}
        part = summary[(summary["model"] == model) & (summary["relevance"] == relevance)
                       & (summary["distance"] == distance) & (summary["protocol"] == protocol)].set_index("k")
        for column, label in [("map_report", "mAP@{k}"), ("map_standard", f"mAP@{{k}} {MIN_KR}"),
                              ("precision", "P@{k}"), ("recall", "R@{k}")]:
            for k in ks:
                if k > 1 or column == "map_report":  # at k = 1 all four are the same number: shown once
                    row[label.format(k=k)] = f"{part.loc[k, column]:.4f}"
            if column == "map_standard" and "map_report_low" in part:  # the largest k's 95% intervals
                last = part.loc[max(ks)]
                row[f"mAP@{max(ks)} 95% CI"] = interval_text(last["map_report_low"], last["map_report_high"])
                row[f"mAP@{max(ks)} {MIN_KR} 95% CI"] = interval_text(last["map_standard_low"],
                                                                     last["map_standard_high"])
        rows.append(row)
    return pd.DataFrame(rows)


GAIN_DEFINITIONS = (("report", ""), ("standard", f" {MIN_KR}"))


def paired_gains(per_query: dict[str, pd.DataFrame], manifests: dict[str, dict], k: int) -> pd.DataFrame:
    """Each trained model against the frozen features of the same backbone at the same size, on
    the same queries: the mean per-query difference of AP@k under both definitions
    (``gain_<definition>``), with its 95% paired bootstrap interval over queries (``_low``, ``_high``)."""
    def frozen_twin(manifest: dict) -> str | None:
        return next((name for name, other in manifests.items()
                     if other.get("recipe", "frozen") == "frozen" and is_available(other) and name in per_query
                     and (other["backbone"], other["image_size"]) == (manifest["backbone"], manifest["image_size"])),
                    None)

    rows = []
    for model, manifest in manifests.items():
        base = frozen_twin(manifest) if manifest.get("recipe", "frozen") != "frozen" else None
        if base is None or model not in per_query:
            continue
        row = {"model": model, "against": base, "queries": len(per_query[model])}
        for definition, _ in GAIN_DEFINITIONS:
            column = f"ap_{definition}@{k}"
            row[f"gain_{definition}"], row[f"gain_{definition}_low"], row[f"gain_{definition}_high"] = \
                metrics.paired_difference(per_query[model][column].to_numpy(), per_query[base][column].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


def gains_table(per_query: dict[str, pd.DataFrame], manifests: dict[str, dict], k: int) -> pd.DataFrame:
    """:func:`paired_gains` as the report shows it: one ``gain [95% interval]`` column per definition."""
    gains = paired_gains(per_query, manifests, k)
    table = gains[["model", "against"]].copy() if len(gains) else pd.DataFrame()
    for definition, label in GAIN_DEFINITIONS:
        if len(gains):
            table[f"mAP@{k}{label} gain [95% interval]"] = [
                paired_estimate(row[f"gain_{definition}"], row[f"gain_{definition}_low"],
                                row[f"gain_{definition}_high"]) for _, row in gains.iterrows()]
    return table


def comparison_markdown(summary: pd.DataFrame, manifests: dict[str, dict], params: Params,
                        per_query: dict[tuple[str, str, str, str], pd.DataFrame] | None = None) -> str:
    """``results.md``: per protocol and relevance definition (first distance), the comparison
    table with 95% intervals, then each trained model's gain over frozen features with its
    paired interval."""
    distance = params.evaluate.distances[0]
    lines = ["# Retrieval by backbone and recipe", "",
             f"Test queries, {distance} distance; mAP@k = the report's definition, {MIN_KR} = the same sum of "
             "precisions divided by min(k, relevant items); P@k precision, R@k hit rate (at k = 1 all four equal mAP@1); training = wall-clock minutes "
             "of training (the fused recipe's includes computing its features); 95% CI: percentile bootstrap interval over queries (how far the mean could move with "
             "other test items).", ""]
    for protocol in dict.fromkeys(summary["protocol"]):
        gallery = "the whole catalogue" if protocol == "catalogue" else "the other test items"
        for relevance in params.evaluate.relevance:
            part = summary[(summary["relevance"] == relevance) & (summary["protocol"] == protocol)]
            counts = part.iloc[0] if len(part) else None
            lines += [f"## {PROTOCOL_TITLES.get(protocol, protocol).capitalize()}; relevant = same {relevance}", ""]
            if counts is not None:
                lines += [f"{counts['queries']} queries scored, {counts['skipped']} skipped (no other item of "
                          f"{gallery} shares their {relevance}).", ""]
            lines += [markdown_table(comparison_table(summary, manifests, relevance, distance, params.evaluate.ks,
                                                      protocol)), ""]
            lines += _gains_lines(per_query, manifests, protocol, relevance, distance, max(params.evaluate.ks))
    missing = unavailable_note(manifests)
    return "\n".join(lines + ([f"*{missing}*", ""] if missing else []))


def _gains_lines(per_query: dict[tuple[str, str, str, str], pd.DataFrame] | None, manifests: dict[str, dict],
                 protocol: str, relevance: str, distance: str, k: int) -> list[str]:
    """The gains table of one protocol, relevance and distance, with its explanation."""
    gains = gains_table({model: frame for (model, prot, rel, dist), frame in (per_query or {}).items()
                         if (prot, rel, dist) == (protocol, relevance, distance)}, manifests, k)
    if not len(gains):
        return []
    return [f"Gain of each trained model over frozen features of the same backbone at the same size, on the "
            f"same queries: the mean per-query difference of AP@{k}, with its 95% paired bootstrap interval "
            "(an interval above zero: a gain that is not chance).", "", markdown_table(gains), ""]


def protocol_notes(catalog: Catalog, params: Params, summary: pd.DataFrame, manifests: dict[str, dict]) -> list[str]:
    """Sentences that say how the tables were measured, for the top of ``map_table.md``."""
    tests = int((catalog.items["split"] == "test").sum())
    notes = [f"Protocols: each of the {tests} test items is a query, excluded from its own results. Catalogue "
             f"protocol: it searches all {len(catalog)} catalogue items (train, validation and test), as "
             "`fashion-search query` does. Test-split protocol (the report's): it searches the other test items. "
             "Relevant = same value in every column of the relevance definition. No model saw a test item in training."]
    for protocol in dict.fromkeys(summary["protocol"]):
        for relevance in params.evaluate.relevance:
            part = summary[(summary["relevance"] == relevance) & (summary["protocol"] == protocol)]
            if len(part):
                notes.append(f"- {protocol}, same {relevance}: {part['queries'].iloc[0]} queries scored, "
                             f"{part['skipped'].iloc[0]} skipped because no other item of the gallery matches them.")
    weights: dict[str, str] = {}  # per backbone, the file its first model was built from
    for manifest in manifests.values():
        weights.setdefault(manifest["backbone"],
                           manifest.get("weights_used") or f"not found ({manifest.get('remedy', '')})")
    notes += [f"- {backbone} weights: {used}" for backbone, used in weights.items()]
    if any(m["weights"] == "none" for m in manifests.values()):
        notes.append("**Columns marked 'random weights' use randomly initialised backbones (weights: none), "
                     "not ImageNet weights: their numbers say nothing about pretrained features.**")
    return notes


def write_reports(summary: pd.DataFrame, manifests: dict[str, dict], catalog: Catalog, params: Params,
                  folder: Path, per_query: dict[tuple[str, str, str, str], pd.DataFrame] | None = None) -> pd.DataFrame:
    """Write ``map_table.csv``, ``map_table.md``, ``results.md`` and ``headline.md`` (what the
    terminal shows at the end of a run) into ``folder``; return the map tables."""
    tables = map_tables(summary, manifests, params.evaluate.ks, params.evaluate.relevance, params.evaluate.distances)
    missing = unavailable_note(manifests)
    write_text_atomic(folder / "map_table.csv", tables.to_csv(index=False))
    write_text_atomic(folder / "map_table.md",
                      map_tables_markdown(tables, protocol_notes(catalog, params, summary, manifests), missing))
    write_text_atomic(folder / HEADLINE_FILE, headline_markdown(tables, missing))
    write_text_atomic(folder / "results.md", comparison_markdown(summary, manifests, params, per_query))
    return tables


QUERIES_COLUMN = "queries"


def per_category_table(per_query: dict[str, pd.DataFrame], label_column: str, column: str) -> pd.DataFrame:
    """Mean of ``column`` per category (rows) and model (columns), the worst category (lowest
    mean over the models) first; the first column counts the queries each row rests on."""
    table = pd.DataFrame({name: frame.groupby(label_column)[column].mean() for name, frame in per_query.items()})
    table = table.loc[table.mean(axis=1).sort_values(kind="stable").index]
    counts = next(iter(per_query.values())).groupby(label_column).size()
    table.insert(0, QUERIES_COLUMN, counts.reindex(table.index).fillna(0).astype(int))
    return table


def write_per_category_map(layout: RunLayout, models: list[str], relevance: str, distance: str,
                           k: int, protocol: str = "catalogue", column: str | None = None) -> pd.DataFrame:
    """AP@k (the report's definition) per value of ``column`` (default: the relevance's first
    column) and model, from the per-query results 04 wrote under ``protocol``; saved as
    ``metrics/per_<column>_map@<k>.csv``."""
    column = column or relevance.split("+")[0]
    per_query = {name: pd.read_csv(layout.per_query(name, relevance, distance, protocol), dtype={column: str})
                 for name in models}
    table = per_category_table(per_query, column, f"ap_report@{k}") if per_query else pd.DataFrame()
    write_text_atomic(layout.metrics / f"per_{column}_map@{k}.csv", table.to_csv())
    return table
