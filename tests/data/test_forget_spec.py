"""ForgetSpec: the one parser of forget-set specs (CLI strings and bench YAML mappings)."""

from __future__ import annotations

import numpy as np
import pytest

from obliviate.bench import ConfigError, load_config
from obliviate.data.splits import ForgetSpec, ForgetSpecError, ForgetSplit, parse_forget_spec, table_of


def test_string_forms_name_the_splits_of_the_constructors(digits):
    train = digits.train
    assert ForgetSpec.parse("random:0.1").split(train, seed=3).hash == ForgetSplit.random(train, 0.1, seed=3).hash
    by_count = ForgetSpec.parse("random:50").split(train, seed=3)
    assert len(by_count) == 50 and by_count.hash == ForgetSplit.random(train, count=50, seed=3).hash
    assert ForgetSpec.parse("class:2,4").split(train).classes == (2, 4)
    assert ForgetSpec.parse("ids:15,4,8").split(train).forget_ids.tolist() == [4, 8, 15]
    pred = ForgetSpec.parse("predicate:label = 3 AND id % 2 = 0").split(train)
    assert pred.hash == ForgetSplit.where(table_of(train), "label = 3 AND id % 2 = 0").hash
    assert parse_forget_spec("random:20", train, seed=1).hash == ForgetSplit.random(train, count=20, seed=1).hash


def test_string_and_mapping_forms_agree_and_round_trip():
    for text, mapping in [
        ("random:0.1", {"random": 0.1}),
        ("random:50", {"random": 50}),
        ("class:3", {"class": 3}),
        ("ids:4,8", {"ids": [4, 8]}),
    ]:
        spec = ForgetSpec.parse(text)
        assert spec == ForgetSpec.from_mapping(mapping) == ForgetSpec.from_mapping(spec.to_mapping())
    assert ForgetSpec.from_mapping({"random": 50.0}).args == {"count": 50}  # a whole number is a count
    assert ForgetSpec.parse("dataset") == ForgetSpec.from_mapping({"dataset": True})
    sub = ForgetSpec.from_mapping({"subclass": {"class": 8, "clusters": 3}})
    assert ForgetSpec.from_mapping(sub.to_mapping()) == sub


def test_default_labels_are_the_ones_bench_cell_files_carry():
    """Cell file names hold the label: a changed default would orphan every finished cell of a grid."""
    labels = [
        ForgetSpec.from_mapping(m).label
        for m in (
            {"random": 0.1},
            {"random": 60},
            {"class": [2, 4]},
            {"subclass": {"class": 8, "clusters": 3, "cluster": 0}},
            {"memorization": {"bin": "high", "count": 60}},
            {"predicate": "label IN (1, 7)  AND id % 5 = 0"},
        )
    ]
    assert labels == [
        "random-0.1",
        "random-60",
        "class-2-4",
        "subclass-8.0of3",
        "memorization-high-60",
        "where label IN (1, 7) AND id % 5 = 0",
    ]
    assert ForgetSpec.from_mapping({"class": 3, "label": "threes"}).label == "threes"


def test_memorization_ranks_by_the_scores_it_is_given(digits):
    spec = ForgetSpec.from_mapping({"memorization": {"bin": "high", "count": 10}})
    with pytest.raises(ValueError, match="pass scores="):
        spec.split(digits.train)
    scores = np.arange(len(digits.train), dtype=float)
    assert spec.split(digits.train, scores=scores).forget_ids.tolist() == list(range(len(scores) - 10, len(scores)))


def test_errors_name_the_offending_key_and_the_yaml_line():
    with pytest.raises(ForgetSpecError) as e:
        ForgetSpec.from_mapping({"memorization": {"bin": "top", "count": 5}})
    assert e.value.where == ("memorization", "bin")
    for bad in ("everything", "random:", "class:x", "subclass:3"):
        with pytest.raises(ValueError, match="bad forget spec"):
            ForgetSpec.parse(bad)
    text = "seeds: [0]\ndatasets: [digits]\nmethods: [none]\nforget:\n  - ids: []\n"
    with pytest.raises(ConfigError, match=r"^<config>:5: ids takes a non-empty list"):
        load_config(text=text)
