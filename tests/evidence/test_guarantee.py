"""SISA ensembles and certified-removal models through ``forget``: their own deletion runs and their
guarantee (the membership proof, the certified bound) is the evidence, with no statistical checks."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import obliviate as ob
from obliviate.cli import app
from obliviate.evidence import forget, verify, verify_ledger
from obliviate.evidence.guarantee import certified_verdict, detect, sisa_checks
from obliviate.exact import SISA, CertifiedLogistic

REQUEST = "subject = 'u-4711'"


@pytest.fixture(scope="module")
def sisa_dir(table_run, tmp_path_factory):
    _, data, _ = table_run
    recipe = ob.Recipe.default_for(data).replace(epochs=2)
    folder = tmp_path_factory.mktemp("sisa") / "ensemble"
    SISA(recipe, shards=3, slices=2).fit(data.train).save(folder)
    return folder


def _members(meta):
    return {i for shard in meta["members"] for part in shard for i in part}


def test_sisa_evidence_is_the_membership_proof(sisa_dir, table_run, tmp_path):
    _, data, _ = table_run
    assert detect(sisa_dir) == "sisa"
    input_files = {p.name: p.read_bytes() for p in sisa_dir.iterdir()}
    b = forget(sisa_dir, data, REQUEST, tmp_path / "f")
    ev = b.evidence
    assert b.verdict == "PASS" and ev["checks_plan"]["mode"] == "guarantee"
    assert ev["method"]["name"] == "sisa" and ev["method"]["class"] == "exact"
    checks = {c["id"]: c for c in ev["checks"]}
    assert list(checks) == ["data_fingerprint", "sisa_membership", "sisa_shards_retrained", "sisa_others_unchanged"]
    assert all(c["verdict"] == "PASS" and c["required"] for c in checks.values())
    assert not any(c["threshold"]["rule"] in ("pred_interval", "fisher", "wilson_tpr") for c in checks.values())
    # the proof, re-derived from the files: no constituent lists a deleted id, and exactly the shards
    # that listed one were retrained (their constituent hashes changed, the others' did not)
    ids = json.loads((b.folder / "resolved_ids.json").read_text())["ids"]
    before, after = (json.loads((d / "sisa.json").read_text()) for d in (sisa_dir, b.folder))
    assert len(ids) == 8 and set(ids) <= _members(before) and not set(ids) & _members(after)
    assert sorted(after["deleted"]) == ids
    holding = sorted({s for s, shard in enumerate(before["members"]) for part in shard for i in part if i in ids})
    assert sorted(int(s) for s in checks["sisa_shards_retrained"]["reference"]["retrained_from"]) == holding
    h0 = ev["model"]["before"]["constituents_tensors_sha256"]
    h1 = ev["model"]["after"]["constituents_tensors_sha256"]
    assert [s for s in range(3) if h0[s] != h1[s]] == holding
    assert {p.name: p.read_bytes() for p in sisa_dir.iterdir()} == input_files  # the input is never written
    html = (b.folder / "evidence.html").read_text()
    assert "constituents were retrained without the data" in html and "data:image/png;base64," in html
    assert verify_ledger(b.folder).ok
    assert verify(b.folder, b.folder / "evidence.json", data).verdict["overall"] == "PASS"

    # a second request touches one shard only; the rows the first one deleted are refused
    b2 = forget(b.folder, data, "ids: 30", tmp_path / "f2")
    shard = int(np.flatnonzero([30 in {i for part in sh for i in part} for sh in after["members"]])[0])
    h2 = b2.evidence["model"]["after"]["constituents_tensors_sha256"]
    assert b2.verdict == "PASS" and [s for s in range(3) if h1[s] != h2[s]] == [shard]
    assert json.loads((b2.folder / "resolved_ids.json").read_text())["earlier"] == ids
    report = verify_ledger(b2.folder)
    assert report.ok and report.entries == 3
    with pytest.raises(ValueError, match="deleted by an earlier request"):
        forget(b2.folder, data, REQUEST, tmp_path / "f3")

    # the membership lists are in the ledger: editing them is caught
    copy = tmp_path / "copy"
    shutil.copytree(b.folder, copy)
    meta = json.loads((copy / "sisa.json").read_text())
    meta["members"][holding[0]][0].append(ids[0])
    (copy / "sisa.json").write_text(json.dumps(meta))
    report = verify_ledger(copy)
    assert not report.ok and "sisa.json" in report.problem


def test_sisa_checks_fail_when_the_proof_does_not_hold():
    members = [[[0, 1], [2]], [[3], [4, 5]]]  # shard 1 held id 6 in slice 0

    def verdicts(**kw):
        args = dict(
            members_after=members,
            deleted_after=[6],
            forgotten=[6],
            holding={1: 0},
            retrained={1: 0},
            hashes_before=["a", "b"],
            hashes_after=["a", "c"],
        )
        return [c.verdict for c in sisa_checks(**{**args, **kw})]

    assert verdicts() == ["PASS", "PASS", "PASS"]
    assert verdicts(members_after=[[[0, 1], [2]], [[3, 6], [4, 5]]])[0] == "FAIL"  # still listed
    assert verdicts(deleted_after=[])[0] == "FAIL"  # not recorded as deleted
    assert verdicts(retrained={})[1] == "FAIL"  # the shard was not retrained
    assert verdicts(retrained={1: 1})[1] == "FAIL"  # retrained from a later slice than the one that held it
    assert verdicts(hashes_after=["a", "b"])[1] == "FAIL"  # its weights did not change
    assert verdicts(hashes_after=["z", "c"])[2] == "FAIL"  # a shard that held nothing changed


@pytest.fixture(scope="module")
def certified(table_run, tmp_path_factory):
    _, data, _ = table_run
    x, y = data.train.x.numpy(), data.train.y.numpy()
    path = tmp_path_factory.mktemp("cert") / "model.npz"
    CertifiedLogistic(lam=0.05, sigma=100.0, eps=1.0, delta=1e-4).fit(x, y).save(path)
    return path


def test_certified_evidence_is_the_bound(certified, table_run, tmp_path):
    _, data, _ = table_run
    assert detect(certified) == "certified"
    b = forget(certified, data, "ids: 30", tmp_path / "c")
    ev = b.evidence
    assert b.verdict == "PASS" and ev["checks_plan"]["mode"] == "guarantee"
    assert ev["method"]["name"] == "certified-removal" and ev["method"]["class"] == "certified"
    checks = {c["id"]: c for c in ev["checks"]}
    assert list(checks) == ["data_fingerprint", "certified_bound", "ids_absent"]
    bound = checks["certified_bound"]
    v, t = bound["value"], bound["threshold"]
    k = 3  # one-vs-rest models for the three classes, each with eps/3 and delta/3
    assert t["eps"] == 1.0 and t["delta"] == 1e-4
    assert math.isclose(t["budget"], 100.0 * (1.0 / k) / math.sqrt(2 * math.log(1.5 / (1e-4 / k))))
    assert not v["retrained"] and v["gradient_residual"] <= v["accumulated_bound"] <= t["budget"]
    assert bound["verdict"] == "PASS" and any("indistinguishable" in r for r in ev["residual_risk"])
    model = CertifiedLogistic.load(b.folder / "certified.npz")  # the written model no longer holds row 30
    assert not model.alive[30] and model.alive.sum() == len(data.train) - 1
    assert "certified within its (ε, δ) bound" in (b.folder / "evidence.html").read_text()
    assert verify_ledger(b.folder).ok

    b2 = forget(b.folder, data, "ids: 31", tmp_path / "c2")  # a second request on the written model
    assert b2.verdict == "PASS" and verify_ledger(b2.folder).entries == 3
    assert json.loads((b2.folder / "resolved_ids.json").read_text())["earlier"] == [30]

    # a request the budget cannot hide (noise scale 0.01): the model retrains with fresh noise, and says so
    x, y = data.train.x.numpy(), data.train.y.numpy()
    CertifiedLogistic(lam=0.05, sigma=0.01).fit(x, y).save(tmp_path / "small.npz")
    b3 = forget(tmp_path / "small.npz", data, REQUEST, tmp_path / "c3")
    bound3 = next(c for c in b3.evidence["checks"] if c["id"] == "certified_bound")
    assert bound3["value"]["retrained"] and bound3["value"]["accumulated_bound"] > bound3["threshold"]["budget"]
    assert b3.verdict == "PASS" and b3.evidence["method"]["class"] == "exact"
    assert any("fresh noise" in n for n in b3.evidence["method"]["notes"])
    gone = json.loads((b3.folder / "resolved_ids.json").read_text())["ids"]
    assert len(gone) == 8 and not CertifiedLogistic.load(b3.folder / "certified.npz").alive[gone].any()


def test_certified_verdict_fails_over_budget_or_above_the_bound():
    ok = {"gradient_residual": 0.1, "accumulated_bound": 0.5, "retrained": False}
    assert certified_verdict(ok, {"budget": 1.0}) == "PASS"
    assert certified_verdict({**ok, "accumulated_bound": 1.5}, {"budget": 1.0}) == "FAIL"  # over budget, kept
    assert certified_verdict({**ok, "gradient_residual": 0.6}, {"budget": 1.0}) == "FAIL"  # residual above bound
    assert certified_verdict({**ok, "accumulated_bound": 1.5, "retrained": True}, {"budget": 1.0}) == "PASS"


def test_guaranteed_models_refuse_other_data_methods_and_artifacts(sisa_dir, certified, table_run, tmp_path):
    _, data, _ = table_run
    other = data.subset_train(torch.arange(len(data.train) - 1))
    with pytest.raises(ValueError, match="not the one the SISA ensemble"):
        forget(sisa_dir, other, "ids: 1", tmp_path / "a")
    with pytest.raises(ValueError, match="not the one the certified model"):
        forget(certified, other, "ids: 1", tmp_path / "b")
    with pytest.raises(ValueError, match="--method auto or sisa"):
        forget(sisa_dir, data, "ids: 1", tmp_path / "c", method="neggrad+")
    assert list(tmp_path.iterdir()) == []
    b = forget(certified, data, "ids: 5", tmp_path / "d")
    fake = tmp_path / "fake.npz"
    shutil.copy(certified, fake)  # the model before the removal, passed off as the certified one
    with pytest.raises(ValueError, match="not the certified model the evidence certifies"):
        verify(fake, b.folder / "evidence.json", data)


def test_cli_forget_detects_sisa_and_certified_models(tmp_path):
    """``obliviate forget`` on a SISA folder and a certified .npz, with --data a .npz of arrays."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    npz = tmp_path / "rows.npz"
    np.savez(npz, x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:])
    data = ob.datasets.load(str(npz))
    SISA(ob.Recipe.default_for(data).replace(epochs=2), shards=2, slices=2).fit(data.train).save(tmp_path / "sisa")
    CertifiedLogistic(lam=0.05, sigma=100.0).fit(x[:60], y[:60]).save(tmp_path / "cert.npz")
    runner = CliRunner()
    for model, name in (("sisa", "sisa"), ("cert.npz", "certified-removal")):
        out = tmp_path / f"out-{name}"
        args = ["forget", str(tmp_path / model), "--data", str(npz), "--request", "ids: 3, 4", "--out", str(out)]
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        assert f"method {name}" in r.output and "guarantee" in r.output and "verdict: PASS" in r.output
        assert verify_ledger(out).ok
        assert (
            runner.invoke(app, ["verify", str(out), "--evidence", f"{out}/evidence.json", "--data", str(npz)]).exit_code
            == 0
        )
    r = runner.invoke(app, ["forget", str(tmp_path / "sisa"), "--request", "ids: 3", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "pass --data" in r.output and not (tmp_path / "x").exists()
