"""Evidence for models whose deletion is exact or certified by construction (``ob.exact``): the
guarantee replaces the statistical checks.

* A **SISA ensemble** (a folder written by :meth:`obliviate.exact.SISA.save`: ``sisa.json`` and
  ``checkpoints.safetensors``) forgets by retraining the shards that held the rows from the slice
  that held them. Its evidence is the membership proof read back from the ``sisa.json`` written to
  ``--out``: no constituent's training set (slice lists) contains a deleted id; the shards that held
  a row are exactly the ones retrained, from the earliest slice that held one, and their weights
  changed; every other constituent's weights are unchanged. Each constituent's tensor hash before
  and after is recorded.
* A **certified-removal model** (:class:`obliviate.exact.CertifiedLogistic` saved as a ``.npz``: the
  file itself, or ``certified.npz`` in a folder) removes rows with one Newton step. Its evidence is the
  certified bound: the gradient residual ‖∇L(w⁻; D′)‖ is at most the accumulated data-dependent bound,
  which is at most the budget σε′/√(2 ln(1.5/δ′)) (ε′, δ′ = ε/K, δ/K per one-vs-rest model), so the
  model is (ε, δ)-indistinguishable from retraining without the rows (Guo et al., ICML 2020). When the
  bound exceeds the budget the model retrains from scratch with fresh noise (exact), and the evidence
  says so.

Both also record that the deleted ids are gone from the saved model's own bookkeeping (SISA's
``deleted`` list, the certified model's ``alive`` mask), and that the data is the one the model was
fitted on (SISA: the training set's fingerprint in ``sisa.json``; certified: the scaled features and
labels the ``.npz`` holds).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.datasets import ArrayDataset, Data
from ..data.splits import ForgetSplit
from ..io import read_json
from .checks import Check, certified_verdict
from .ledger import sha256_file, tensors_sha256
from .requests import Resolution, ids_sha256

SISA_META, SISA_WEIGHTS = "sisa.json", "checkpoints.safetensors"
CERTIFIED_FILE = "certified.npz"
_CERTIFIED_KEYS = {"x", "y", "alive", "gram", "classes", "spent", "w", "b", "scalars"}


def detect(path: str | Path) -> str | None:
    """``"sisa"``, ``"certified"`` or None (an ordinary model folder) for a model path."""
    p = Path(path)
    if p.is_dir() and (p / SISA_META).exists():
        return "sisa"
    npz = p / CERTIFIED_FILE if p.is_dir() else p
    if npz.suffix == ".npz" and npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as z:
                if _CERTIFIED_KEYS <= set(z.files):
                    return "certified"
        except (OSError, ValueError):
            return None
    return None


def certified_file(path: Path) -> Path:
    return path / CERTIFIED_FILE if path.is_dir() else path


def _train_arrays(data: Data) -> tuple[np.ndarray, np.ndarray]:
    train = data.train
    if not isinstance(train, ArrayDataset):
        raise ValueError(f"a certified-removal model is fitted on feature arrays; this data's rows are {type(train)}")
    return train.x.reshape(len(train), -1).double().numpy(), train.y.numpy()


# ---- the checks: pure functions of what the run recorded, so each can be shown to fail -----------------------
def sisa_checks(
    members_after: list[list[list[int]]],
    deleted_after: list[int],
    forgotten: list[int],
    holding: dict[int, int],
    retrained: dict[int, int],
    hashes_before: list[str],
    hashes_after: list[str],
) -> list[Check]:
    """The SISA membership proof. ``members_after`` and ``deleted_after`` are read back from the written
    ``sisa.json``; ``forgotten`` is every id deleted so far (this request's and earlier ones');
    ``holding`` maps each shard that held one of this request's rows to the earliest slice that did;
    ``retrained`` is what :meth:`SISA.delete` retrained (shard -> first slice)."""
    gone = set(forgotten)
    still = {s: sorted(gone & {i for part in shard for i in part}) for s, shard in enumerate(members_after)}
    still = {s: ids for s, ids in still.items() if ids}
    unrecorded = sorted(gone - set(deleted_after))
    changed = [s for s in range(len(hashes_after)) if hashes_after[s] != hashes_before[s]]
    not_retrained = {s: r for s, r in holding.items() if retrained.get(s, len(hashes_after)) > r}
    unchanged = [s for s in holding if s not in changed]
    touched = sorted(s for s in changed if s not in holding)
    membership = Check(
        "sisa_membership",
        "Does any constituent model's training set still contain a deleted row?",
        "guarantee",
        True,
        {"stat": "slice lists in sisa.json"},
        {"rule": "guarantee"},
        {"constituents": len(members_after), "ids_checked": len(gone)},
        value=not still and not unrecorded,
        note="; ".join(
            [f"shard {s} still lists {ids[:5]}" for s, ids in still.items()]
            + ([f"ids {unrecorded[:5]} missing from the deleted list"] if unrecorded else [])
        ),
    )
    rebuilt = Check(
        "sisa_shards_retrained",
        "Were the constituents that held the rows retrained without them, from the slice that held them?",
        "guarantee",
        True,
        {"stat": "retrained shards and constituent hashes"},
        {"rule": "guarantee"},
        {
            "holding": {str(s): r for s, r in sorted(holding.items())},
            "retrained_from": {str(s): r for s, r in sorted(retrained.items())},
            "hashes_before": {str(s): hashes_before[s] for s in sorted(holding)},
            "hashes_after": {str(s): hashes_after[s] for s in sorted(holding)},
        },
        value=not not_retrained and not unchanged,
        note="; ".join(
            [f"shard {s} held a row in slice {r} but was not retrained from it" for s, r in not_retrained.items()]
            + [f"shard {s}'s weights did not change" for s in unchanged]
        ),
    )
    others = Check(
        "sisa_others_unchanged",
        "Are the constituents that held none of the rows unchanged?",
        "integrity",
        True,
        {"stat": "constituent hashes"},
        {"rule": "guarantee"},
        {"unchanged": [s for s in range(len(hashes_after)) if s not in holding]},
        value=not touched,
        note="" if not touched else f"shards {touched} changed without holding a deleted row",
    )
    for c in (membership, rebuilt, others):
        c.verdict = "PASS" if c.value else "FAIL"
    return [membership, rebuilt, others]


def certified_checks(removal: Any, model: Any, forgotten: list[int]) -> list[Check]:
    """The certified bound of one removal (``removal``: :class:`obliviate.exact.Removal`) and the ids'
    absence from the model's ``alive`` mask."""
    k = 1 if len(model.classes) == 2 else len(model.classes)
    bound = Check(
        "certified_bound",
        "Is the removal certified: is the model (ε, δ)-indistinguishable from one retrained without the rows?",
        "guarantee",
        True,
        {"stat": "gradient residual and its bound"},
        {
            "rule": "certified_bound",
            "budget": float(model.budget),
            "eps": float(model.eps),
            "delta": float(model.delta),
        },
        {
            "sigma": float(model.sigma),
            "lam": float(model.lam),
            "one_vs_rest_models": k,
            "c": float(np.sqrt(2 * np.log(1.5 / (model.delta / k)))),
            "budget_formula": "sigma * (eps / K) / sqrt(2 ln(1.5 / (delta / K)))",
        },
        value={
            "gradient_residual": removal.gradient_residual,
            "accumulated_bound": removal.accumulated_bound,
            "residual_bound": removal.residual_bound,
            "budget_left": removal.budget_left,
            "retrained": removal.retrained,
        },
    )
    alive = np.asarray(model.alive)
    absent = Check(
        "ids_absent",
        "Are the deleted rows gone from the model's training set?",
        "integrity",
        True,
        {"stat": "alive mask"},
        {"rule": "guarantee"},
        {"n_rows": len(alive)},
        value=not bool(alive[forgotten].any()),
    )
    absent.verdict = "PASS" if absent.value else "FAIL"
    bound.verdict = certified_verdict(bound.value, bound.threshold)
    return [bound, absent]


# ---- running a request -----------------------------------------------------------------------------------
def _new_rows(resolution: Resolution, earlier: set[int], n_alive: int) -> Resolution:
    """The request's rows not deleted earlier (the resolution's hash then covers those only)."""
    if not earlier:
        return resolution
    new = [i for i in resolution.ids if i not in earlier]
    if not new:
        raise ValueError(f"request {resolution.request.text!r}: every row it matches was deleted by an earlier request")
    if len(new) >= n_alive:
        raise ValueError(f"request {resolution.request.text!r} matches every remaining row: nothing would be retained")
    n = resolution.split.n
    split = ForgetSplit(torch.as_tensor(new), n, kind=resolution.request.rule)
    return replace(resolution, split=split, ids_sha256=ids_sha256(split.forget_ids, n))


def _accuracy(proba: np.ndarray | torch.Tensor, classes: np.ndarray | None, y: np.ndarray) -> float:
    pred = np.asarray(proba).argmax(1)
    if classes is not None:
        pred = classes[pred]
    return float((pred == y).mean())


def sisa_hashes(folder: Path, constituents: list[str]) -> dict[str, Any]:
    return {
        "sha256": sha256_file(folder / SISA_WEIGHTS),
        "sisa_json_sha256": sha256_file(folder / SISA_META),
        "constituents_tensors_sha256": constituents,
    }


def load_sisa(folder: Path, data: Data) -> tuple[Any, list[str], str, str | None]:
    """The ensemble, its constituents' tensor hashes, the data's fingerprint and the recorded one
    (a mismatch is an error: this is not the data the ensemble was fitted on)."""
    from ..exact import SISA

    meta = read_json(folder / SISA_META)
    recorded = meta.get("dataset_fingerprint")
    fp_fn = getattr(data.train, "fingerprint", None)
    fp = fp_fn() if callable(fp_fn) else None
    if len(data.train) != meta["n"] or (recorded and fp != recorded):
        raise ValueError(
            f"the data ({len(data.train)} training rows, fingerprint {fp}) is not the one the SISA ensemble in "
            f"{folder} was fitted on ({meta['n']} rows, fingerprint {recorded})"
        )
    sisa = SISA.load(folder, data.train)
    hashes = [tensors_sha256(sisa.checkpoints[s][-1]["model"]) for s in range(sisa.shards)]
    return sisa, hashes, str(fp), recorded


def forget_sisa(folder: Path, data: Data, resolution: Resolution, tmp_model: Path) -> dict[str, Any]:
    """Delete the resolved rows from the SISA ensemble in ``folder``, save it to ``tmp_model`` and return
    the parts of the evidence that differ from an ordinary model's."""
    sisa, before, fp, recorded = load_sisa(folder, data)
    assert sisa.assign is not None
    ids = resolution.ids
    earlier = sorted(sisa.deleted)
    holding: dict[int, int] = {}
    for i in ids:
        s, r = (int(v) for v in sisa.assign[i])
        holding[s] = min(holding.get(s, r), r)
    x_test, y_test = data.test.x, data.test.y.numpy()  # type: ignore[attr-defined]
    acc_before = _accuracy(sisa.predict_proba(x_test), None, y_test)
    deletion = sisa.delete(ids)
    sisa.save(tmp_model)

    after = [tensors_sha256(sisa.checkpoints[s][-1]["model"]) for s in range(sisa.shards)]
    written = read_json(tmp_model / SISA_META)
    forgotten = sorted({*earlier, *ids})
    checks = sisa_checks(written["members"], written["deleted"], forgotten, holding, deletion.retrained, before, after)
    acc_after = _accuracy(sisa.predict_proba(x_test), None, y_test)
    return {
        "kind": "sisa",
        "fingerprint": fp,
        "recorded_fingerprint": recorded,
        "model_before": sisa_hashes(folder, before),
        "model_after": {"path": SISA_WEIGHTS, **sisa_hashes(tmp_model, after)},
        "model_file": SISA_WEIGHTS,
        "extra_artifacts": {SISA_META: {"path": SISA_META, "sha256": sha256_file(tmp_model / SISA_META)}},
        "method": {
            "name": "sisa",
            "class": "exact",
            "params": {
                "shards": sisa.shards,
                "slices": sisa.slices,
                "aggregation": sisa.aggregation,
                "retrained_shards": {str(s): r for s, r in deletion.retrained.items()},
                "sample_passes": deletion.sample_passes,
            },
            "seed": sisa.seed,
            "why": "the model is a SISA ensemble: deleting retrains only the shards that held the rows, from the "
            "slice that held them, which gives exactly the ensemble SISA trains without the rows",
            "seconds": deletion.seconds,
            "diverged": False,
            "notes": [f"test accuracy {acc_before:.4f} before, {acc_after:.4f} after (informational)"],
        },
        "checks": checks,
        "earlier": earlier,
    }


def load_certified(path: Path, data: Data) -> tuple[Any, str]:
    """The model and the data's fingerprint; data other than the rows it was fitted on is an error."""
    import hashlib

    from ..exact import CertifiedLogistic

    model = CertifiedLogistic.load(certified_file(path))
    x, y = _train_arrays(data)
    same = (
        len(x) == len(model.x)
        and model._features(x).shape == model.x.shape
        and np.array_equal(model._features(x), model.x)
        and np.array_equal(y, model.y)
    )
    if not same:
        raise ValueError(
            f"the data ({len(x)} training rows) is not the one the certified model in {path} was fitted on "
            f"({len(model.x)} rows): its features or labels differ"
        )
    fp = hashlib.sha256(np.ascontiguousarray(model.x).tobytes() + np.asarray(model.y).astype("<i8").tobytes())
    return model, fp.hexdigest()


def _weights_sha256(model: Any) -> str:
    import hashlib

    h = hashlib.sha256()
    for name in ("w", "b"):
        h.update(np.ascontiguousarray(np.stack(getattr(model, name))).tobytes())
    return h.hexdigest()


def forget_certified(path: Path, data: Data, resolution: Resolution, tmp_model: Path) -> dict[str, Any]:
    """Remove the resolved rows from the certified model at ``path`` with its Newton step, save it to
    ``tmp_model/certified.npz`` and return the evidence parts."""
    model, fp = load_certified(path, data)
    x_test, y_test = data.test.x.reshape(len(data.test), -1).double().numpy(), data.test.y.numpy()  # type: ignore[attr-defined]
    acc_before = _accuracy(model.predict_proba(x_test), model.classes, y_test)
    earlier = np.flatnonzero(~np.asarray(model.alive)).tolist()
    before = {"sha256": sha256_file(certified_file(path)), "weights_sha256": _weights_sha256(model)}
    start = time.perf_counter()
    removal = model.remove(resolution.ids)
    seconds = time.perf_counter() - start
    model.save(tmp_model / CERTIFIED_FILE)
    forgotten = sorted({*earlier, *resolution.ids})
    checks = certified_checks(removal, model, forgotten)
    acc_after = _accuracy(model.predict_proba(x_test), model.classes, y_test)
    notes = [f"test accuracy {acc_before:.4f} before, {acc_after:.4f} after (informational)"]
    if removal.retrained:
        notes.append(
            "the accumulated bound exceeded the budget: the Newton step was discarded and the model retrained "
            "from scratch on the remaining rows with fresh noise (exact); the budget is reset"
        )
    return {
        "kind": "certified",
        "fingerprint": fp,
        "recorded_fingerprint": fp,
        "model_before": before,
        "model_after": {
            "path": CERTIFIED_FILE,
            "sha256": sha256_file(tmp_model / CERTIFIED_FILE),
            "weights_sha256": _weights_sha256(model),
        },
        "model_file": CERTIFIED_FILE,
        "extra_artifacts": {},
        "method": {
            "name": "certified-removal",
            "class": "exact" if removal.retrained else "certified",
            "params": {
                "eps": model.eps,
                "delta": model.delta,
                "sigma": model.sigma,
                "lam": model.lam,
                "retrained": removal.retrained,
            },
            "seed": int(model.seed),
            "why": "the model is a certified-removal logistic regression: one Newton step removes the rows, and "
            "while the accumulated residual bound stays within the (ε, δ) budget the model is indistinguishable "
            "from retraining without them",
            "seconds": seconds,
            "diverged": False,
            "notes": notes,
        },
        "checks": checks,
        "earlier": earlier,
    }


def alive_count(kind: str, path: Path) -> tuple[set[int], int]:
    """The ids earlier requests deleted and the number of rows the model still holds."""
    if kind == "sisa":
        meta = read_json(path / SISA_META)
        return set(meta["deleted"]), int(meta["n"]) - len(meta["deleted"])
    with np.load(certified_file(path), allow_pickle=False) as z:
        alive = z["alive"]
    return set(np.flatnonzero(~alive).tolist()), int(alive.sum())
