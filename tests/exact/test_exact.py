"""Exact unlearning (SISA, in-process and on Ray) and certified removal for logistic regression."""

from __future__ import annotations

import copy
import shutil
import tempfile

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.preprocessing import StandardScaler

import obliviate as ob
from obliviate.exact import SISA, CertifiedLogistic, slice_epochs
from obliviate.exact.certified import _loss_grad
from obliviate.exact.sisa import _train_stages


@pytest.fixture(scope="module")
def small(digits):
    return digits.train.subset(torch.arange(600))


@pytest.fixture(scope="module")
def sisa_recipe(recipe):
    return recipe.replace(epochs=8)


def test_slice_schedule_matches_the_sisa_code():
    assert slice_epochs(20, 1) == [20]
    assert slice_epochs(12, 4) == [4, 5, 5, 5]  # ē = 2e/(R+1) = 4.8
    # each stage sees slices 1..r, so the passes over a shard add up to about `epochs` full passes
    e, r = 12, 4
    assert sum((i + 1) / r * k for i, k in enumerate(slice_epochs(e, r))) == pytest.approx(e, abs=0.5)


def test_sisa_delete_is_exactly_a_fresh_fit_without_the_ids(small, sisa_recipe, digits):
    """``delete`` equals training each shard on an explicitly built id list: the pre-deletion slices
    with the ids filtered out by hand (no ``_drop``), every stage from scratch."""
    sisa = SISA(sisa_recipe, shards=3, slices=3, seed=0).fit(small)
    members = copy.deepcopy(sisa.members)
    assert sorted(i for shard in members for part in shard for i in part) == list(range(len(small)))
    before = [[{k: v.clone() for k, v in c["model"].items()} for c in shard] for shard in sisa.checkpoints]
    ids = [3, 250, 251]
    where = {
        i: next((s, r) for s, shard in enumerate(members) for r, part in enumerate(shard) if i in part) for i in ids
    }
    first: dict[int, int] = {}
    for s, r in where.values():
        first[s] = min(first.get(s, r), r)
    res = sisa.delete(ids)
    assert res.retrained == dict(sorted(first.items())) and res.removed == 3 and res.seconds > 0
    explicit = [[[i for i in part if i not in ids] for part in shard] for shard in members]
    assert sisa.members == explicit  # the ids left their slices, no other id moved
    assert all(sisa.assign[i][0] == -1 for i in ids) and sisa.deleted == set(ids)

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    for s in range(3):
        upto = first.get(s, 3)
        # untouched shards and the slices before the deleted ones keep their checkpoints ...
        assert all(same(before[s][r], sisa.checkpoints[s][r]["model"]) for r in range(upto))
        # ... every retrained stage changed ...
        assert not any(same(before[s][r], sisa.checkpoints[s][r]["model"]) for r in range(upto, 3))
        if s in first:  # ... into what a shard trained from scratch on the explicit lists gives
            states = _train_stages(dict(sisa._job(s, 0), slices=explicit[s]))
            assert all(same(states[r]["model"], sisa.checkpoints[s][r]["model"]) for r in range(3))
    assert first.keys() != set(range(3))  # the test covers an untouched shard too
    fresh = SISA(sisa_recipe, shards=3, slices=3, seed=0).fit(small, exclude=ids)
    assert fresh.members == explicit
    assert torch.equal(sisa.predict_proba(digits.test), fresh.predict_proba(digits.test))
    assert (sisa.predict(digits.test) == digits.test.y).float().mean() > 0.85


def test_sisa_rejects_bad_deletions(small, sisa_recipe):
    with pytest.raises(RuntimeError, match="fit"):
        SISA(sisa_recipe).delete([1])
    sisa = SISA(sisa_recipe, shards=2, slices=2, seed=1).fit(small)
    for ids, words in [([600], "out of range"), ([4, 4], "duplicates"), ([], "empty")]:
        with pytest.raises(ValueError, match=words):
            sisa.delete(ids)
    sisa.delete([7])
    with pytest.raises(ValueError, match="already deleted"):
        sisa.delete([7, 8])
    with pytest.raises(ValueError, match="aggregation"):
        SISA(sisa_recipe, aggregation="max")
    votes = SISA(sisa_recipe, shards=3, slices=1, seed=0, aggregation="vote").fit(small).predict_proba(small)
    assert torch.allclose(votes.sum(1), torch.ones(len(small))) and set(torch.unique(votes * 3).tolist()) <= {
        0,
        1,
        2,
        3,
    }


def test_sisa_on_ray_gives_identical_results(small, sisa_recipe, digits, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("HOME", str(tmp_path))  # Ray writes a token and logs under HOME
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    from obliviate.executor import RayExecutor

    short = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    try:
        ex = RayExecutor(num_cpus=2, _temp_dir=short)
        on_ray = SISA(sisa_recipe, shards=2, slices=2, seed=0, executor=ex, threads=1).fit(small)
        here = SISA(sisa_recipe, shards=2, slices=2, seed=0, threads=1).fit(small)
        assert torch.equal(on_ray.predict_proba(digits.test), here.predict_proba(digits.test))
        assert on_ray.delete([10, 20]).retrained == here.delete([10, 20]).retrained
        assert torch.equal(on_ray.predict_proba(digits.test), here.predict_proba(digits.test))
        # bench cells go through the same executor, with the same results as in-process
        from obliviate.bench import load_config, run

        cfg = load_config(
            text="seeds: [0]\nthreads: 1\ndatasets: [digits]\nforget: [{random: 0.1}]\n"
            "methods: [none, finetune]\nmetrics: [forget_acc, test_acc, js_forget]\n"
        )
        a = run(cfg, tmp_path / "ray-bench", executor=ex, progress=False)
        b = run(cfg, tmp_path / "here-bench", progress=False)
        cols = ["method", "seed", "metric", "value"]
        timing = a.results.metric.isin(["seconds", "cost_ratio"])
        assert a.computed == 3 and a.results[~timing][cols].equals(b.results[~timing][cols])
    finally:
        ray.shutdown()
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(x), y


def test_certified_removal_stays_under_its_residual_bound(cancer):
    x, y = cancer
    m = CertifiedLogistic(lam=1e-3, sigma=10.0, eps=10.0, seed=0).fit(x, y)
    assert (m.predict(x) == y).mean() > 0.85
    for i in range(5):
        r = m.remove([i])
        assert r.certified and not r.retrained and r.removed == 1
        # the data-dependent bound holds for the released model: residuals of earlier steps accumulate
        assert r.gradient_residual <= r.accumulated_bound and r.residual_bound <= r.accumulated_bound
        assert 0 < r.budget_left < 1
    # the Newton step lands near the exact minimiser of the remaining data (same noise b)
    exact = CertifiedLogistic(lam=1e-3, sigma=10.0, eps=10.0, seed=0).fit(x, y)
    exact.alive[:5] = False
    exact.w = [exact.w[0]]
    from scipy.optimize import minimize

    t = exact._targets(exact.y[exact.alive])[0]
    ref = minimize(
        _loss_grad,
        m.w[0],
        args=(exact.x[exact.alive], t, 1e-3, m.b[0]),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "maxiter": 2000},
    ).x
    assert np.linalg.norm(m.w[0] - ref) < 1e-3 * np.linalg.norm(ref)


def test_certified_is_read_off_the_bound_and_a_spent_budget_refits(cancer):
    """Single removals spend the budget σε/c: each is certified while the accumulated bound
    γ·‖X‖₂·‖Δw‖·‖XΔw‖ (recomputed here) stays within it. The one that overspends is not certified:
    its Newton step is discarded and the model refits on the remaining rows with fresh noise."""
    x, y = cancer
    m = CertifiedLogistic(lam=1e-3, sigma=1.0, eps=1.0, delta=1e-4, seed=0).fit(x, y)
    budget = 1.0 * 1.0 / np.sqrt(2 * np.log(1.5 / 1e-4))
    spent, certified = 0.0, 0
    for i in range(len(y)):
        w0, b0 = m.w[0].copy(), m.b[0].copy()
        r = m.remove([i])
        if r.retrained:
            break
        step, rest = m.w[0] - w0, m.x[m.alive]
        bound = 0.25 * np.linalg.norm(rest, 2) * np.linalg.norm(step) * np.linalg.norm(rest @ step)
        spent += bound
        assert r.residual_bound == pytest.approx(bound, rel=1e-9) and r.accumulated_bound == pytest.approx(spent)
        assert r.certified and spent <= budget and r.budget_left == pytest.approx(1 - spent / budget)
        certified += 1
    assert certified >= 3  # the budget covered a few Newton steps before it ran out
    assert not r.certified and spent + r.residual_bound > budget
    assert r.accumulated_bound == pytest.approx(spent + r.residual_bound)
    assert r.budget_left == 1.0 and m.retrains == 1 and not np.allclose(m.b[0], b0)  # fresh noise, full budget
    # the released model is a fresh fit: the exact minimiser of the new objective on the remaining rows only
    assert m.alive.sum() == len(y) - certified - 1 and not m.alive[: certified + 1].any()
    t = m._targets(m.y[m.alive])[0]
    assert np.linalg.norm(_loss_grad(m.w[0], m.x[m.alive], t, 1e-3, m.b[0])[1]) < 1e-8
    with pytest.raises(ValueError, match="already removed"):
        m.remove([0])
    with pytest.raises(ValueError, match="out of range"):
        m.remove([len(y)])


def test_a_batch_over_a_tiny_budget_is_not_certified(cancer):
    x, y = cancer
    m = CertifiedLogistic(lam=1e-3, sigma=0.01, eps=0.1, seed=0).fit(x, y)
    r = m.remove(np.arange(20))
    assert not r.certified and r.retrained and r.budget_left == 1.0 and m.retrains == 1


def test_certified_multiclass_one_vs_rest():
    x, y = load_wine(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    m = CertifiedLogistic(lam=1e-3, sigma=1.0, eps=5.0).fit(x, y)
    assert m.predict_proba(x).shape == (len(y), 3) and (m.predict(x) == y).mean() > 0.85
    assert np.allclose(m.predict_proba(x).sum(1), 1)
    r = m.remove([0, 1])
    assert r.gradient_residual <= r.accumulated_bound


@pytest.fixture(scope="module")
def randhie():
    pytest.importorskip("statsmodels")
    data = ob.datasets.load("randhie")
    return data.subset_train(torch.arange(3000))


def test_randhie_loads_with_raw_columns_for_predicates(randhie):
    assert randhie.num_classes == 3 and randhie.input_shape == (9,)
    assert list(randhie.train_table.columns[:3]) == ["lncoins", "idp", "lpi"] and len(randhie.train_table) == 3000
    split = ob.ForgetSplit.where(
        ob.datasets.splits.table_of(randhie.train, randhie.train_table), "disea > 30 AND hlthg = 1"
    )
    rows = randhie.train_table.iloc[split.forget_ids.numpy()]
    assert (rows.disea > 30).all() and (rows.hlthg == 1).all()


def test_sequential_requests_each_against_its_own_oracle(randhie):
    from obliviate.evaluation.requests import sequential_requests

    recipe = ob.Recipe.default_for(randhie).replace(epochs=5)
    original = ob.train(recipe, randhie.train, seed=0, progress=False)
    preds = ["disea > 40", "hlthp = 1", "idp = 1 AND physlm = 1", "fmde > 7.5", "disea > 35"]
    df = sequential_requests(original, randhie, preds, recipe=recipe, metrics=["forget_acc", "test_acc"])
    assert df.step.tolist() == [1, 2, 3, 4, 5]
    # later requests only delete rows that are still there; totals add up
    assert (df.deleted > 0).all() and df.deleted_total.tolist() == df.deleted.cumsum().tolist()
    assert (df.remaining + df.deleted_total == 3000).all()
    assert {"forget_acc", "oracle_forget_acc", "all_deleted_acc", "oracle_all_deleted_acc"} <= set(df.columns)
    for bad, words in [
        ("disea >", "request 2: syntax error"),
        ("age > 3", "request 2: .*does not fit the table"),
        ("disea > 1000", "request 2: .*matches no rows"),
        ("disea >= 0", "request 2: .*every row"),
    ]:
        with pytest.raises(ValueError, match=words):
            sequential_requests(original, randhie, ["hlthp = 1", bad], recipe=recipe)
    with pytest.raises(ValueError, match="request 2 .*only rows deleted by earlier requests"):
        sequential_requests(original, randhie, ["disea > 40", "disea > 45"], recipe=recipe)


def test_sisa_saves_reloads_and_keeps_deleting_exactly(small, sisa_recipe, digits, tmp_path):
    sisa = SISA(sisa_recipe, shards=2, slices=2, seed=3).fit(small)
    sisa.delete([5])
    sisa.save(tmp_path / "sisa")
    back = SISA.load(tmp_path / "sisa", small)
    assert torch.equal(back.predict_proba(digits.test), sisa.predict_proba(digits.test))
    assert back.delete([9]).retrained == sisa.delete([9]).retrained
    assert torch.equal(back.predict_proba(digits.test), sisa.predict_proba(digits.test))
    with pytest.raises(ValueError, match="already deleted"):
        back.delete([5])
    with pytest.raises(RuntimeError, match="needs the training data"):
        SISA.load(tmp_path / "sisa").delete([11])
    with pytest.raises(ValueError, match="fingerprints differ"):
        SISA.load(tmp_path / "sisa", digits.train.subset(torch.arange(1, 601)))


def test_certified_model_saves_and_keeps_removing(cancer, tmp_path):
    x, y = cancer
    m = CertifiedLogistic(lam=1e-3, sigma=10.0, eps=10.0, seed=0).fit(x, y)
    m.remove([0])
    back = CertifiedLogistic.load(m.save(tmp_path / "cr.npz"))
    assert np.array_equal(back.predict_proba(x), m.predict_proba(x)) and back.budget == m.budget
    a, b = m.remove([1]), back.remove([1])
    assert a.accumulated_bound == b.accumulated_bound and np.allclose(m.w[0], back.w[0])
