"""04's planned comparison of distances: Euclidean, cosine and weighted Jaccard side by side, with
intervals; Jaccard refused, in words, for features with negative values; whether it wins."""
import numpy as np
import pandas as pd
import pytest
import yaml

from fashion_search.data.catalog import Catalog
from fashion_search.layout import RunLayout
from fashion_search.params import ConfigError
from fashion_search.params_file import load_params
from fashion_search.pipeline.distances_report import jaccard_verdict, not_applicable
from fashion_search.pipeline.evaluate import evaluate_all
from fashion_search.pipeline.features import FeatureStore
from fashion_search.pipeline.report import headline_markdown, map_tables
from fashion_search.pipeline.tables import estimate, interval_text, paired_estimate


def write_params(tmp_path, raw_params, distances):
    raw = {**raw_params, "evaluate": {**raw_params["evaluate"], "distances": distances}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path / "params.yaml"


def test_jaccard_is_an_evaluate_distance_and_others_are_refused_naming_it(tmp_path, raw_params):
    params = load_params(write_params(tmp_path, raw_params, ["euclidean", "jaccard"]))
    assert params.evaluate.distances == ("euclidean", "cosine", "jaccard")[::2]
    with pytest.raises(ConfigError, match="evaluate.distances.*jaccard"):
        load_params(write_params(tmp_path, raw_params, ["euclidean", "manhattan"]))


def toy_run(tmp_path, raw_params):
    """Two stores over one catalogue of three classes: pooled-like features (non-negative) and an
    L2-normalised embedding with negative values."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 12)
    items = pd.DataFrame({"id": [f"i{n}" for n in range(len(labels))], "label": labels,
                          "category": [f"c{v}" for v in labels], "split": np.tile(["train", "test"], 18)})
    catalog = Catalog(items, np.zeros((len(labels), 28, 28), np.uint8))
    centres = rng.uniform(0, 1, (3, 16)) * (rng.uniform(size=(3, 16)) > 0.5)
    pooled = np.maximum(centres[labels] + rng.normal(0, 0.3, (len(labels), 16)), 0).astype(np.float32)
    embedding = rng.normal(size=(len(labels), 8)).astype(np.float32)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    base = {"backbone": "efficientnet_lite0", "weights": "imagenet", "image_size": 128}
    stores = {"lite0-frozen": FeatureStore(pooled, items["id"].tolist(), {**base, "recipe": "frozen"}),
              "lite0-cosface": FeatureStore(embedding, items["id"].tolist(), {**base, "recipe": "cosface"})}
    params = load_params(write_params(tmp_path, raw_params, ["euclidean", "cosine", "jaccard"]))
    layout = RunLayout(tmp_path / "run")
    summary, tables = evaluate_all(params, stores, catalog, layout)
    return summary, tables, layout, pooled, items


def test_jaccard_ranks_pooled_features_side_by_side_and_refuses_an_embedding_in_words(tmp_path, raw_params):
    summary, tables, layout, pooled, items = toy_run(tmp_path, raw_params)
    scored = set(zip(summary["model"], summary["distance"]))
    assert ("lite0-frozen", "jaccard") in scored and ("lite0-cosface", "jaccard") not in scored
    assert ("lite0-cosface", "cosine") in scored  # the embedding keeps its other distances
    refused = not_applicable(layout.metrics)
    assert refused[["model", "distance"]].values.tolist() == [["lite0-cosface", "jaccard"]]
    assert "needs non-negative features" in refused["reason"][0] and "values are negative" in refused["reason"][0]
    # the report's layout says n/a where Jaccard could not rank, numbers elsewhere
    jaccard = tables[(tables["distance"] == "jaccard") & (tables["protocol"] == "catalogue")]
    assert set(jaccard.filter(like="cosface").iloc[:, 0]) == {"n/a"}
    assert all(float(v) > 0 for v in jaccard.filter(like="frozen").iloc[:, 0])

    report = (layout.metrics / "distances.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| lite0-")]
    assert len(rows) == 2 * 2 * 3  # both protocols, both models, three distances
    frozen_jaccard = next(r for r in rows if r.startswith("| lite0-frozen | jaccard |"))
    assert "[" in frozen_jaccard and frozen_jaccard.count("[") == 4  # two scores, two paired differences
    assert next(r for r in rows if r.startswith("| lite0-cosface | jaccard |")).count("not applicable") == 2
    assert "Σᵢ min(qᵢ, gᵢ) / Σᵢ max(qᵢ, gᵢ)" in report and "non-negative features" in report
    assert "lite0-cosface, jaccard: not applicable: weighted Jaccard needs non-negative" in report
    assert "Jaccard wins for" in report or "Jaccard does not win for any model" in report

    # the Jaccard score is the one a brute-force weighted Jaccard ranking gives on the catalogue protocol
    tests = np.flatnonzero(items["split"] == "test")
    labels = items["category"].to_numpy()
    hits = []
    for q in tests:
        similarity = np.minimum(pooled[q], pooled).sum(1) / np.maximum(pooled[q], pooled).sum(1)
        similarity[q] = -np.inf
        hits.append(labels[np.argsort(-similarity, kind="stable")[0]] == labels[q])
    measured = summary[(summary["model"] == "lite0-frozen") & (summary["distance"] == "jaccard")
                       & (summary["protocol"] == "catalogue") & (summary["k"] == 1)]["map_report"].iloc[0]
    assert measured == pytest.approx(np.mean(hits))


def test_the_verdict_needs_an_interval_above_zero_against_every_other_distance():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.8, 300)
    ids = [f"q{n}" for n in range(300)]

    def frames(jaccard, cosine):
        return {("m", "catalogue", "category", d): pd.DataFrame({"id": ids, "ap_report@10": v})
                for d, v in (("euclidean", base), ("cosine", cosine), ("jaccard", jaccard))}

    none_refused = pd.DataFrame(columns=["model", "distance", "reason"])
    won, said = jaccard_verdict(frames(base + 0.05, base + 0.01), ["m"], ("euclidean", "cosine", "jaccard"),
                                "catalogue", "category", 10, none_refused)
    assert won and "Jaccard wins for m" in said and "+0.0500 [+0.0500, +0.0500] against euclidean" in said
    noise = rng.normal(0, 0.2, 300)
    noisy = base + 0.05 + noise - noise.mean()  # cosine as good as Jaccard on average: no win beyond chance
    won, said = jaccard_verdict(frames(base + 0.05, noisy), ["m"], ("euclidean", "cosine", "jaccard"),
                                "catalogue", "category", 10, none_refused)
    assert not won and "does not win" in said and "engine keeps its distance" in said
    refused = pd.DataFrame({"model": ["e"], "distance": ["jaccard"], "reason": ["negative values"]})
    won, said = jaccard_verdict(frames(base, base), ["m", "e"], ("euclidean", "cosine", "jaccard"), "catalogue",
                                "category", 10, refused)
    assert not won and "Not applicable to e" in said


def test_interval_cells_do_not_wrap():
    for cell in (interval_text(0.789, 0.822), estimate(0.8059, 0.789, 0.822), paired_estimate(0.02, -0.01, 0.05)):
        assert " " not in cell  # only no-break spaces
    assert interval_text(0.789, 0.822) == "0.789\u2060–\u20600.822"
    assert estimate(0.8059, 0.789, 0.822).replace("\u00a0", " ") == "0.8059 [0.789, 0.822]"


def test_the_console_table_says_what_its_top_k_means():
    summary = pd.DataFrame({"model": "m", "protocol": "catalogue", "relevance": "category", "distance": "euclidean",
                            "k": [1, 5, 10], "map_report": [0.77, 0.83, 0.81], "map_standard": [0.77, 0.7, 0.66]})
    manifests = {"m": {"backbone": "efficientnet_lite0", "weights": "imagenet", "image_size": 128}}
    headline = headline_markdown(map_tables(summary, manifests, (1, 5, 10), ("category",), ("euclidean",)), "")
    assert "| Top 5 | 0.8300 |" in headline and "| Top 10 | 0.8100 |" in headline
    assert "can fall from Top 5 to Top 10" in headline and "min(k, relevant)" in headline
