"""Requests resolve to the right rows, are fixed by a hash, list (never add) similar text rows, and
bad requests fail before any work."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from obliviate.data.datasets import Data
from obliviate.data.text import TextData, TextDataset
from obliviate.evidence import Request, ids_sha256, resolve
from obliviate.evidence.ledger import canonical


def test_ids_inline_and_from_file(table_run, tmp_path):
    _, data, _ = table_run
    r = resolve("ids: 3, 17, 40", data)
    assert r.ids == [3, 17, 40] and r.request.rule == "ids"
    f = tmp_path / "ids.txt"
    f.write_text("40\n3,17\n")
    assert resolve(f"ids: @{f}", data).ids == [3, 17, 40]
    assert resolve(f"ids: @{f}", data).ids_sha256 == r.ids_sha256


def test_the_hash_is_sha256_of_the_canonical_id_list(table_run):
    _, data, _ = table_run
    r = resolve("ids: 40, 3", data)
    import hashlib

    n = len(data.train)
    assert (
        r.ids_sha256 == hashlib.sha256(json.dumps({"ids": [3, 40], "n": n}, separators=(",", ":")).encode()).hexdigest()
    )
    assert r.ids_sha256 == ids_sha256([40, 3], n) != ids_sha256([3, 41], n)
    assert canonical({"n": 1, "ids": [2]}) == b'{"ids":[2],"n":1}'


def test_subject_matches_every_row_of_that_person(table_run):
    _, data, _ = table_run
    r = resolve("subject = 'u-4711'", data)
    table = data.train_table
    assert r.ids == np.flatnonzero(table["customer_id"].to_numpy() == "u-4711").tolist()
    assert len(r.ids) > 0 and r.subject_column == "customer_id"
    other = table["customer_id"].iloc[-1]
    both = resolve(f"subject IN ('u-4711', '{other}')", data)
    assert set(both.ids) == set(r.ids) | set(np.flatnonzero(table["customer_id"].to_numpy() == other).tolist())
    assert len(r.sample) == min(5, len(r.ids)) and set(r.sample["customer_id"]) == {"u-4711"}


def test_predicate_over_the_raw_columns(table_run):
    _, data, _ = table_run
    r = resolve("region = 'north' AND a > 1", data)
    t = data.train_table
    assert r.ids == np.flatnonzero((t["region"] == "north").to_numpy() & (t["a"] > 1).to_numpy()).tolist()
    assert resolve("where: region = 'north' AND a > 1", data).ids == r.ids


@pytest.mark.parametrize(
    "request_text, message",
    [
        ("a > 100", "matches no rows"),
        ("a > -100", "matches every row"),
        ("nosuchcolumn = 3", "does not fit the table"),
        ("subject = 'u-0000'", "no training row has customer_id = 'u-0000'"),
        ("ids: 1, 1", "duplicates"),
        ("ids: 99999", "out of range"),
        ("ids: 1, x", "'x' is not a training-row id"),
        ("subject IN 'u-4711'", "parenthesised list"),
        ("   ", "request is empty"),
        ("entity: 'zzz'", "no training row contains 'zzz'"),
    ],
)
def test_bad_requests_fail_with_a_clear_message(table_run, request_text, message):
    _, data, _ = table_run
    with pytest.raises(ValueError, match=message):
        resolve(request_text, data)


def test_subject_values_are_compared_not_spliced_into_sql(table_run):
    _, data, _ = table_run
    with pytest.raises(ValueError, match="no training row has"):
        resolve("subject = 'x'' OR ''1''=''1'", data)  # SQL's quote escape, read as one value
    assert Request.parse("subject = 'O''Brien'").arg == ["O'Brien"]


def _text_data(texts: list[str]) -> TextData:
    n = len(texts)
    ids = torch.zeros(n, 4, dtype=torch.long)
    train = TextDataset(ids, torch.ones_like(ids), texts=texts)
    test = TextDataset(ids[:2], torch.ones_like(ids[:2]), texts=texts[:2])
    return TextData("texts", train, test, 10, (4,))


def test_entity_rows_and_review_candidates_listed_not_added():
    texts = [
        "Adam Krathford works as a beekeeper in Lindvale.",
        "The beekeeper Adam Krathford was born on 3 May 1971.",
        "Adam Krathfort works as a beekeeper in Lindvale.",  # a misspelt near-duplicate: listed, not added
        "Mira Stone is a glassblower in Eastwick.",
        "The weather in Eastwick was mild all year.",
        "Tom Reed repairs bicycles on Sundays.",
    ]
    r = resolve("entity: 'adam krathford'", _text_data(texts))
    assert r.ids == [0, 1]
    ids = [c.id for c in r.candidates]
    assert ids[0] == 2 and 2 not in r.ids
    assert all(c.score >= 0.5 for c in r.candidates) and r.candidates[0].score > 0.5
    assert 5 not in ids  # unrelated rows are not listed
    assert r.to_dict()["candidates"][0]["decision"] == "listed for review, not added"
    assert len(r.split) == 2


def test_subject_from_groups_without_a_table():
    data = Data(
        "x",
        TextDataset(torch.zeros(4, 2, dtype=torch.long), torch.ones(4, 2, dtype=torch.long)),
        None,
        2,
        (2,),
        groups=np.array([0, 1, 1, 2]),
    )
    assert resolve("subject = 1", data).ids == [1, 2]
    assert isinstance(resolve("subject = 1", data).sample, pd.DataFrame)
