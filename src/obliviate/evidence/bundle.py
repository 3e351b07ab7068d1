"""``forget``: resolve a deletion request, unlearn, check, and write the evidence bundle; ``verify``:
re-judge another artifact of the model against the checks the bundle recorded.

An output folder holds the unlearned model (``model.safetensors`` + ``manifest.json``),
``resolved_ids.json`` (ids only), ``evidence.json``, ``evidence.html`` and ``ledger.jsonl`` (the
input folder's ledger plus this request's entry). Everything is written into a hidden temporary
folder beside ``out`` and renamed into place at the end, so an interrupted run leaves no
half-written evidence, and a rerun starts over (or, if ``out`` already holds the evidence for the
same request, returns it). The input folder is never written to.

**Method ``auto``** (the rule, recorded with its reason): ``retrain`` (exact) when retraining once
is estimated to cost at most ``retrain_budget`` seconds (the original's recorded training time ×
the retained share); otherwise ``npo`` for text models and ``neggrad+`` for classifiers
(approximate; a forget set above 10 % of the rows is flagged, approximate methods drift there).
A classifier whose training log covers today's rows and whose data has a validation part gets
``heldout-distill`` instead of ``neggrad+``: on the overfit Fashion-MNIST grid its Avg.Gap is 1.46
against 3.38 (random 10%) and 0.09 against 0.43 (class 3), at a similar cost.

**Checks** (``oracle="auto"``): R oracles retrained without the rows (default 8, one vectorised
ensemble where the architecture allows) when their estimated cost fits ``budget`` seconds, and the
checks referenced to them (:func:`obliviate.evidence.checks.oracle_checks`); otherwise oracle-free
checks: the per-example MIA against ``n_shadows`` (default 16) shadow models on halves of the
retained rows where those fit the budget (classifiers), the population MIA and, for text,
extraction against never-trained rows, and a utility check against the original. The
quantization attack is run either way, relearning where oracles judge it. Estimated cost:
recorded training seconds × retained share × members, divided by 4 for MLP ensembles (the vectorised
speed-up measured for small MLPs, ``train/ensemble.py``).

SISA ensembles and certified-removal models (:mod:`obliviate.evidence.guarantee`) run their own
deletion instead, and their guarantee replaces these checks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.datasets import Data
from ..data.splits import ForgetSplit
from ..data.text import TextData
from ..data.user import fingerprint
from ..evaluation import evaluate
from ..evaluation.oracles import ensemble_seeds
from ..io import atomic_write_text, load_state, read_json
from ..methods.unlearn import unlearn
from ..models.store import load_model, versions
from ..objectives import task_of
from ..train import train, train_ensemble
from ..train.recipe import Recipe
from . import checks as C
from . import guarantee as G
from . import ledger
from .ledger import tensors_sha256
from .requests import Resolution, ids_sha256, resolve

SCHEMA = "obliviate.evidence/1"
EVIDENCE, HTML, IDS = "evidence.json", "evidence.html", "resolved_ids.json"
DEFAULT_ATTACKS = ("quantize-int4", "relearn")
EXACT_METHODS = ("retrain",)
#: relearning needs some forget rows to relearn from and others to measure
RELEARN_MIN_ROWS = 5
MLP_ENSEMBLE_SPEEDUP = 4.0
N_SHADOWS = 16


def model_hashes(folder: Path) -> dict[str, str]:
    weights = folder / "model.safetensors"
    return {"sha256": ledger.sha256_file(weights), "tensors_sha256": tensors_sha256(load_state(weights))}


def data_fingerprint(data: Data) -> str:
    """sha256 of the training rows and their table (:func:`obliviate.data.user.fingerprint`), the
    fingerprint ``obliviate train --data`` records in the model's manifest."""
    try:
        return fingerprint(data)
    except TypeError as e:
        raise ValueError(f"the training set has no content fingerprint: {e}") from None


@dataclass
class Plan:
    """What will be done and checked, and why, decided before any work."""

    method: str
    method_why: str
    mode: str  # oracle | shadow | population
    mode_why: str
    n_models: int
    estimated_seconds: float | None
    attacks: list[str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "why": self.mode_why,
            "n_models": self.n_models,
            "estimated_seconds": self.estimated_seconds,
            "attacks": self.attacks,
            "notes": self.notes,
        }


@dataclass
class Bundle:
    """The written bundle: the output ``folder`` and the ``evidence`` it holds."""

    folder: Path
    evidence: dict[str, Any]
    reused: bool = False

    @property
    def verdict(self) -> str:
        return str(self.evidence["verdict"]["overall"])


def _distill_ready(log: Any, data: Data, split: ForgetSplit) -> bool:
    """Whether ``heldout-distill`` can run: a classifier, a held-out part, and a training log whose
    learning events still describe every training row (earlier deletions remove rows)."""
    events = getattr(log, "events", None) or {}
    conf = events.get("confidence")
    return not isinstance(data, TextData) and data.val is not None and conf is not None and conf.shape[-1] == split.n


def plan(
    data: Data,
    resolution: Resolution,
    recipe: Recipe | None,
    train_seconds: float | None,
    *,
    method: str = "auto",
    oracle: str = "auto",
    n_oracles: int = 8,
    n_shadows: int = N_SHADOWS,
    budget: float = 120.0,
    retrain_budget: float = 30.0,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    retrain_after: int | None = None,
    approximate_so_far: int = 0,
    distill_ready: bool = False,
) -> Plan:
    """Choose the method (for ``auto``) and the kind of checks from the estimated costs.
    ``retrain_after=N``: the N-th approximate request in a row (``approximate_so_far`` before this one,
    counted since the last exact deletion) is an exact retrain instead: approximate requests drift
    from the oracle one after another (the randhie sequential-requests run shows it)."""
    if retrain_after is not None and retrain_after < 1:
        raise ValueError(f"retrain_after must be >= 1 (or None), got {retrain_after}")
    if oracle not in ("auto", "yes", "no"):
        raise ValueError(f"oracle must be auto, yes or no, got {oracle!r}")
    if n_oracles < 2:
        raise ValueError(f"n_oracles must be >= 2 (the noise floor needs two), got {n_oracles}")
    if n_shadows < 2:
        raise ValueError(f"n_shadows must be >= 2 (each row's Gaussian needs two), got {n_shadows}")
    text = isinstance(data, TextData)
    share = 1 - len(resolution.split) / resolution.split.n
    once = None if train_seconds is None else train_seconds * share
    speedup = MLP_ENSEMBLE_SPEEDUP if recipe is not None and recipe.architecture == "mlp" else 1.0
    notes: list[str] = []
    if method == "auto":
        if once is not None and once <= retrain_budget:
            method, why = "retrain", f"retraining is estimated at {once:.1f} s (≤ {retrain_budget:g} s): exact deletion"
        else:
            method = "npo" if text else ("heldout-distill" if distill_ready else "neggrad+")
            cost = "unknown" if once is None else f"{once:.0f} s"
            kind = "text" if text else "classifier"
            why = f"retraining costs {cost} (> {retrain_budget:g} s or unrecorded): approximate {method}, {kind} model"
            if 1 - share > 0.10:
                why += "; the request covers over 10% of the rows, where approximate methods drift from retraining"
    else:
        why = "chosen by the user"
    if retrain_after is not None and method not in EXACT_METHODS and approximate_so_far + 1 >= retrain_after:
        if recipe is None:
            raise ValueError("--retrain-after needs the training recipe, and the model's manifest records none")
        why = (
            f"policy: {approximate_so_far} approximate request(s) since the last exact deletion, and retrain_after is "
            f"{retrain_after}: exact retrain instead of {method} ({why})"
        )
        method = "retrain"
    if recipe is None and oracle == "yes":
        raise ValueError("oracles need the training recipe, and the model's manifest records none")
    oracle_cost = None if once is None else once * n_oracles / speedup
    if oracle == "yes" or (
        oracle == "auto" and oracle_cost is not None and oracle_cost <= budget and recipe is not None
    ):
        mode, mode_why = (
            "oracle",
            (
                "requested"
                if oracle == "yes"
                else f"{n_oracles} oracle retrains are estimated at {oracle_cost:.1f} s (≤ budget {budget:g} s)"
            ),
        )
        n_models, est = n_oracles, oracle_cost
    else:
        shadow_cost = None if once is None else once * 0.5 * n_shadows / speedup
        reason = (
            "oracles were not requested"
            if oracle == "no"
            else (
                "the training time is not recorded"
                if oracle_cost is None
                else f"{n_oracles} oracle retrains would take ~{oracle_cost:.0f} s (> budget {budget:g} s)"
            )
        )
        if not text and recipe is not None and shadow_cost is not None and shadow_cost <= budget:
            mode, n_models, est = "shadow", n_shadows, shadow_cost
            mode_why = (
                f"{reason}; {n_shadows} shadows on halves of the retained rows fit the budget (~{shadow_cost:.1f} s)"
            )
        else:
            mode, n_models, est = "population", 0, 0.0
            mode_why = f"{reason}; checks against never-trained rows only"
    used = []
    for a in attacks:
        if a.startswith("relearn") and (mode != "oracle" or len(resolution.split) < RELEARN_MIN_ROWS):
            notes.append(
                f"{a} not run: "
                + (
                    "it is judged against oracles under the same attack"
                    if mode != "oracle"
                    else f"fewer than {RELEARN_MIN_ROWS} rows"
                )
            )
            continue
        used.append(a)
    return Plan(method, why, mode, mode_why, n_models, est, used, notes)


def _out_ready(out: Path, ids_hash: str) -> dict[str, Any] | None:
    """None if ``out`` may be written; the existing evidence if it already answers this request."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    existing = out / EVIDENCE
    if existing.exists():
        ev = read_json(existing)
        if ev.get("resolution", {}).get("ids_sha256") == ids_hash:
            return ev
        raise ValueError(f"{out} already holds evidence for another request; choose a new --out folder")
    if any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty; choose a new folder")
    return None


def load_original(model_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    folder = Path(model_dir)
    if not (folder / "model.safetensors").exists():
        raise ValueError(f"{folder} holds no model.safetensors: pass a folder written by obliviate train / forget")
    if not (folder / "manifest.json").exists():
        raise ValueError(f"{folder} has no manifest.json: the model's architecture and training data are unknown")
    return load_model(folder)


def check_fingerprint(manifest: dict[str, Any], data: Data) -> tuple[str, str | None]:
    """The data's fingerprint and the one the manifest records (None if none); a mismatch is an error."""
    fp = data_fingerprint(data)
    recorded = manifest.get("data_fingerprint") or (manifest.get("data") or {}).get("fingerprint")
    if recorded is not None and recorded != fp:
        raise ValueError(
            f"the data's fingerprint {fp} differs from the one in the model's manifest ({recorded}): "
            "this is not the data the model was trained on"
        )
    return fp, recorded


def forget(
    model_dir: str | Path,
    data: Data,
    request: str,
    out: str | Path,
    *,
    method: str = "auto",
    params: dict[str, Any] | None = None,
    oracle: str = "auto",
    n_oracles: int = 8,
    n_shadows: int = N_SHADOWS,
    budget: float = 120.0,
    retrain_budget: float = 30.0,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    seed: int = 0,
    subject_column: str | None = None,
    request_id: str | None = None,
    data_source: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    show: Callable[[Resolution, Plan], None] | None = None,
    retrain_after: int | None = None,
) -> Bundle:
    """Resolve ``request`` on ``data``, unlearn it from the model in ``model_dir``, check the result and
    write the bundle to ``out`` (see the module docstring). ``show`` is called with the resolution and
    the plan before any work (the CLI prints the matched rows there). Bad input raises ValueError
    before anything is written."""
    started = time.perf_counter()
    model_dir, out = Path(model_dir), Path(out)
    if out.resolve() == model_dir.resolve():
        raise ValueError("--out must be a new folder: the input model's folder is never modified")
    kind = G.detect(model_dir)
    if kind is not None:
        return _forget_guaranteed(
            kind, model_dir, data, request, out, method, subject_column, request_id, data_source, show, started
        )
    original, manifest = load_original(model_dir)
    fp, recorded_fp = check_fingerprint(manifest, data)
    subject_column = subject_column or manifest.get("subject")
    resolution = resolve(request, data, subject_column=subject_column)
    earlier = [int(i) for i in manifest.get("forgotten_ids", [])]
    resolution, data, split = _without_earlier(resolution, data, earlier)
    existing = _out_ready(out, resolution.ids_sha256)
    log = getattr(original, "obliviate_log", None)
    recipe = None
    if log is not None:
        try:
            recipe = Recipe.from_dict(log.recipe)
        except ValueError:
            recipe = None
    the_plan = plan(
        data,
        resolution,
        recipe,
        None if log is None else float(log.seconds),
        method=method,
        oracle=oracle,
        n_oracles=n_oracles,
        n_shadows=n_shadows,
        budget=budget,
        retrain_budget=retrain_budget,
        attacks=attacks,
        retrain_after=retrain_after,
        approximate_so_far=int(manifest.get("approximate_since_exact", 0)),
        distill_ready=_distill_ready(log, data, split),
    )
    if show is not None:
        show(resolution, the_plan)
    if existing is not None:
        return Bundle(out, existing, reused=True)
    previous = _verified_ledger(model_dir)

    dev = torch.device(device) if device is not None else None
    result = unlearn(
        original,
        data.train,
        split,
        method=the_plan.method,
        seed=seed,
        recipe=recipe,
        val=data.val,
        task=task_of(data),
        device=device,
        progress=False,
        **(params or {}),
    )
    unlearn_s = result.seconds
    ctx = C.Context(data, split, seed, dev)
    t0 = time.perf_counter()
    found: list[C.Check] = []
    comparison: list[dict[str, Any]] = []
    if the_plan.mode == "oracle":
        assert recipe is not None
        oracles = _oracles(recipe, data, split, seed, the_plan.n_models, device)
        found += C.oracle_checks(oracles, ctx, the_plan.attacks)
        if len(split) >= 2:  # the full table's loss attack needs two deleted rows
            frame = evaluate(result.model, data, split, oracle=oracles[:2], seed=seed, device=device).to_frame()
            comparison = [C._finite(r) for r in frame.to_dict("records")]
        else:
            the_plan.notes.append("the full comparison table is left out: its loss attack needs two deleted rows")
    else:
        if the_plan.mode == "shadow":
            assert recipe is not None
            shadows = _shadows(recipe, data, split, seed, the_plan.n_models, device)
            found += C.shadow_checks(shadows, ctx, the_plan.attacks)
        found += C.population_checks(ctx, the_plan.attacks)
        found.append(C.utility_check(original, ctx))
    for c in found:
        C.judge(c, result.model, ctx)
    checks_s = time.perf_counter() - t0
    found += _integrity(split, fp, recorded_fp, the_plan.method, result)
    verdict = C.overall(found)

    tmp = _partial(out)
    try:
        result.save(tmp)
        streak = 0 if result.method in EXACT_METHODS else int(manifest.get("approximate_since_exact", 0)) + 1
        _carry_over(model_dir, manifest, tmp, sorted({*earlier, *resolution.ids}), streak)
        before, after = model_hashes(model_dir), model_hashes(tmp)
        lines = _chain(model_dir, previous, before)
        prev = ledger.entry_hash(lines[-1])
        evidence = {
            **_evidence_head(request_id, resolution, data, fp, recorded_fp, data_source),
            "model": {
                "before": {"folder": str(model_dir), **before},
                "after": {"path": "model.safetensors", **after},
                "spec": manifest.get("model"),
            },
            "method": {
                "name": result.method,
                "class": "exact" if result.method in EXACT_METHODS else "approximate",
                "params": result.params,
                "seed": seed,
                "why": the_plan.method_why,
                "retrain_after": retrain_after,
                "seconds": unlearn_s,
                "diverged": result.diverged,
                "notes": result.notes,
            },
            "checks_plan": the_plan.to_dict(),
            "checks": [c.to_dict() for c in found],
            "comparison": comparison,
            "verdict": verdict,
            "residual_risk": _residual_risk(resolution, result.method),
            "environment": versions(),
            "seconds": {"unlearn": unlearn_s, "checks": checks_s, "total": time.perf_counter() - started},
            "previous_entry": prev,
        }
        evidence = _record(
            tmp, out, evidence, lines, resolution, earlier, {"model_after": {"path": "model.safetensors", **after}}
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(out, evidence)


def _partial(out: Path) -> Path:
    """The hidden temporary folder beside ``out`` that a run writes into before renaming it."""
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent if out.parent.exists() else None))


def _verified_ledger(model_dir: Path) -> list[bytes]:
    """The input model's ledger lines, refused when its chain does not verify (both forget paths)."""
    previous = ledger.read_lines(model_dir)
    if previous and not ledger.verify(model_dir, check_artifacts=False).ok:
        raise ValueError(
            f"the input model's ledger ({model_dir / ledger.LEDGER}) does not verify: {ledger.verify(model_dir)}"
        )
    return previous


def _chain(model_dir: Path, previous: list[bytes], before: dict[str, Any]) -> list[bytes]:
    """The input's ledger lines, or a genesis entry for a model that has none."""
    return previous or [
        ledger.canonical(ledger.make_entry([], "genesis", {"model": before}, note=f"trained model {model_dir.name}"))
    ]


def _evidence_head(
    request_id: str | None,
    resolution: Resolution,
    data: Data,
    fp: str,
    recorded: str | None,
    data_source: dict[str, Any] | None,
) -> dict[str, Any]:
    """What every evidence.json opens with: the schema, the request as asked, what it matched, the data."""
    return {
        "schema": SCHEMA,
        "request": {
            "id": request_id or f"REQ-{resolution.ids_sha256[:8]}",
            "text": resolution.request.text,
            "received": ledger.now(),
        },
        "resolution": resolution.to_dict(),
        "data": {
            "fingerprint": fp,
            "manifest_fingerprint": recorded,
            "n_train": len(data.train),
            "n_test": len(data.test),
            **(data_source or {}),
        },
    }


def _record(
    tmp: Path,
    out: Path,
    evidence: dict[str, Any],
    lines: list[bytes],
    resolution: Resolution,
    earlier: list[int],
    model_artifacts: dict[str, Any],
) -> dict[str, Any]:
    """Write the resolved ids, evidence.json/html and the ledger (the input's lines plus this request's
    entry) into ``tmp``, then rename ``tmp`` to ``out``. Returns the evidence as written."""
    folder_id = uuid.uuid4().hex
    atomic_write_text(tmp / ledger.FOLDER_ID, folder_id + "\n")
    atomic_write_text(
        tmp / IDS,
        json.dumps(
            {"n": resolution.split.n, "ids": resolution.ids, "sha256": resolution.ids_sha256, "earlier": earlier}
        ),
    )
    evidence = C._finite(evidence)
    atomic_write_text(tmp / EVIDENCE, json.dumps(evidence, indent=2))
    from .html import render

    atomic_write_text(tmp / HTML, render(evidence))
    artifacts = {
        "data_fingerprint": {"sha256": evidence["data"]["fingerprint"]},
        EVIDENCE: {"path": EVIDENCE, "sha256": ledger.sha256_file(tmp / EVIDENCE)},
        "model_before": {k: v for k, v in evidence["model"]["before"].items() if k != "folder"},
        "resolved_ids": {"path": IDS, "sha256": ledger.sha256_file(tmp / IDS)},
        **model_artifacts,
    }
    entry = ledger.make_entry(
        lines,
        "forget",
        artifacts,
        request_id=evidence["request"]["id"],
        verdict=evidence["verdict"]["overall"],
        folder_id=folder_id,
    )
    assert entry["prev"] == evidence["previous_entry"]
    ledger.write(tmp, [*lines, ledger.canonical(entry)])
    if out.exists():
        out.rmdir()  # checked empty before any work
    os.replace(tmp, out)
    return evidence


def _forget_guaranteed(
    kind: str,
    model_dir: Path,
    data: Data,
    request: str,
    out: Path,
    method: str,
    subject_column: str | None,
    request_id: str | None,
    data_source: dict[str, Any] | None,
    show: Callable[[Resolution, Plan], None] | None,
    started: float,
) -> Bundle:
    """``forget`` for a SISA ensemble or a certified-removal model (:mod:`obliviate.evidence.guarantee`):
    the model's own deletion runs, and its guarantee is the check."""
    name = {"sisa": "sisa", "certified": "certified-removal"}[kind]
    if method not in ("auto", name):
        raise ValueError(
            f"{model_dir} is a {name} model: it forgets by its own exact or certified deletion (--method auto or "
            f"{name}), not by {method!r}"
        )
    resolution = resolve(request, data, subject_column=subject_column)
    earlier, n_alive = G.alive_count(kind, model_dir)
    resolution = G._new_rows(resolution, earlier, n_alive)
    existing = _out_ready(out, resolution.ids_sha256)
    why = {
        "sisa": "a SISA ensemble: the shards that held the rows are retrained without them (exact by construction)",
        "certified": "a certified-removal model: a Newton step removes the rows within a certified (ε, δ) bound",
    }[kind]
    the_plan = Plan(
        name, why, "guarantee", f"the model is {why}; the guarantee replaces the statistical checks", 0, 0.0, []
    )
    if show is not None:
        show(resolution, the_plan)
    if existing is not None:
        return Bundle(out, existing, reused=True)
    previous = _verified_ledger(model_dir)
    tmp = _partial(out)
    try:
        run = (G.forget_sisa if kind == "sisa" else G.forget_certified)(model_dir, data, resolution, tmp)
        found: list[C.Check] = run["checks"]
        fp, recorded = run["fingerprint"], run["recorded_fingerprint"]
        found.insert(
            0,
            C.Check(
                "data_fingerprint",
                "Is the data the one the model was trained on?",
                "integrity",
                True,
                {"stat": "fingerprint"},
                {"rule": "equal"},
                {"expected": recorded},
                value=fp == recorded,
                verdict="PASS" if fp == recorded else "FAIL",
            ),
        )
        before = run["model_before"]
        lines = _chain(model_dir, previous, before)
        prev = ledger.entry_hash(lines[-1])
        evidence = {
            **_evidence_head(request_id, resolution, data, fp, recorded, data_source),
            "model": {"kind": kind, "before": {"folder": str(model_dir), **before}, "after": run["model_after"]},
            "method": run["method"],
            "checks_plan": the_plan.to_dict(),
            "checks": [c.to_dict() for c in found],
            "comparison": [],
            "verdict": C.overall(found),
            "residual_risk": _residual_risk(resolution, "retrain")
            + (
                [
                    f"certified removal: the model is ({run['method']['params']['eps']:g}, "
                    f"{run['method']['params']['delta']:g})-indistinguishable from one retrained without the rows, "
                    "not identical to it"
                ]
                if run["method"]["class"] == "certified"
                else []
            ),
            "environment": versions(),
            "seconds": {"unlearn": run["method"]["seconds"], "checks": 0.0, "total": time.perf_counter() - started},
            "previous_entry": prev,
        }
        model_artifacts = {"model_after": run["model_after"], **run["extra_artifacts"]}
        evidence = _record(tmp, out, evidence, lines, resolution, run["earlier"], model_artifacts)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(out, evidence)


def _without_earlier(resolution: Resolution, data: Data, earlier: list[int]) -> tuple[Resolution, Data, ForgetSplit]:
    """The request's rows that earlier requests (recorded in the model's manifest) have not deleted yet,
    and the data and split to work on: the training rows still in the model, positions renumbered.
    The resolution keeps ids in the data file's training positions."""
    if not earlier:
        return resolution, data, resolution.split
    gone = set(earlier)
    new = [i for i in resolution.ids if i not in gone]
    if not new:
        raise ValueError(f"request {resolution.request.text!r}: every row it matches was deleted by an earlier request")
    n = resolution.split.n
    alive = torch.as_tensor([i for i in range(n) if i not in gone], dtype=torch.long)
    if len(new) == len(alive):
        raise ValueError(f"request {resolution.request.text!r} matches every remaining row: nothing would be retained")
    full = ForgetSplit(torch.as_tensor(new), n, kind=resolution.request.rule)
    resolution = replace(resolution, split=full, ids_sha256=ids_sha256(full.forget_ids, n))
    work = ForgetSplit(torch.searchsorted(alive, full.forget_ids), len(alive), kind=full.kind)
    return resolution, data.subset_train(alive), work


def _carry_over(
    model_dir: Path, manifest: dict[str, Any], folder: Path, forgotten: list[int], approximate_streak: int = 0
) -> None:
    """Give the new model folder what the next request needs: how to read the data again (the data
    entry, the table encoder or tokenizer), the training recipe (oracles are retrained with it), every
    row deleted so far and how many approximate requests ran since the last exact one (``retrain_after``)."""
    from ..data.user import ENCODER_FILE, TOKENIZER_DIR
    from ..io import write_json

    new = read_json(folder / "manifest.json")
    for key in ("data", "training", "dataset", "subject"):
        if key in manifest:
            new.setdefault(key, manifest[key])
    new["forgotten_ids"] = forgotten
    new["approximate_since_exact"] = approximate_streak
    write_json(folder / "manifest.json", new)
    if (model_dir / ENCODER_FILE).exists():
        shutil.copy2(model_dir / ENCODER_FILE, folder / ENCODER_FILE)
    if (model_dir / TOKENIZER_DIR).is_dir():
        shutil.copytree(model_dir / TOKENIZER_DIR, folder / TOKENIZER_DIR)


def _oracles(recipe: Recipe, data: Data, split: Any, seed: int, n: int, device: Any) -> list[nn.Module]:
    retain = split.retain_set(data.train)
    seeds = ensemble_seeds(seed, n)
    if isinstance(data, TextData):
        return [train(recipe, retain, seed=s, device=device, progress=False) for s in seeds]
    return train_ensemble(recipe, retain, seeds, device=device, progress=False).models()


def _shadows(recipe: Recipe, data: Data, split: Any, seed: int, n: int, device: Any) -> list[nn.Module]:
    retain_ids = split.retain_ids
    g = torch.Generator().manual_seed(seed)
    halves = torch.stack(
        [retain_ids[torch.randperm(len(retain_ids), generator=g)[: len(retain_ids) // 2]] for _ in range(n)]
    )
    seeds = ensemble_seeds(seed + 7919, n)
    return train_ensemble(recipe, data.train, seeds, subsets=halves, device=device, progress=False).models()


def _integrity(split: ForgetSplit, fp: str, recorded: str | None, method: str, result: Any) -> list[C.Check]:
    out = [
        C.Check(
            "data_fingerprint",
            "Is the data the one the model was trained on?",
            "integrity",
            recorded is not None,
            {"stat": "fingerprint"},
            {"rule": "equal"},
            {"expected": recorded},
            value=fp == recorded if recorded is not None else None,
            verdict="PASS" if recorded == fp else "NOT RECORDED" if recorded is None else "FAIL",
            note="" if recorded is not None else "the model's manifest records no data fingerprint",
        )
    ]
    if method in EXACT_METHODS:
        out.append(
            C.Check(
                "exact_retrain",
                "Was the model rebuilt from scratch without the rows?",
                "guarantee",
                True,
                {"stat": "method"},
                {"rule": "guarantee"},
                {"method": method, "split_hash": result.split_hash},
                value=result.split_hash == split.hash and not result.diverged,
                verdict="PASS" if result.split_hash == split.hash and not result.diverged else "FAIL",
            )
        )
    return out


def _residual_risk(resolution: Resolution, method: str) -> list[str]:
    risks = [
        "copies of the model or the data made before this request (exports, quantized copies, backups, "
        "vendors) still hold the rows: delete them or re-verify them with `obliviate verify`",
        "the training data itself is not deleted by this tool: remove the rows from the data store too",
    ]
    if method not in EXACT_METHODS:
        risks.append(
            "approximate unlearning: the checks could not tell the model from retraining, which is evidence, not proof"
        )
    if resolution.request.rule == "entity":
        risks.append(
            f"{len(resolution.candidates)} similar rows were listed for review and not deleted; paraphrases "
            "that share no words with the matched rows are not found by TF-IDF"
        )
    if resolution.request.rule == "subject":
        risks.append("rows of this person without the subject key (free text, other tables) are not covered")
    return risks


# ---- re-verification --------------------------------------------------------------------------------------
@dataclass
class Verification:
    """What :func:`verify` found for an artifact: ``same_weights`` as the verified model, the checks
    re-run (if the weights differ) and the verdict."""

    artifact: Path
    same_weights: bool
    checks: list[C.Check]
    verdict: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": str(self.artifact),
            "same_weights": self.same_weights,
            "checks": [c.to_dict() for c in self.checks],
            "verdict": self.verdict,
        }


def load_artifact(path: str | Path, spec: dict[str, Any] | None) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A model folder (``model.safetensors``) or a ``.safetensors`` file, loaded into the architecture
    the evidence records."""
    from ..models.architectures import build

    p = Path(path)
    weights = p / "model.safetensors" if p.is_dir() else p
    state = load_state(weights)
    if spec is None:
        raise ValueError("the evidence records no model architecture: re-verification needs one")
    model = build(spec["architecture"], tuple(spec["input_shape"]), spec["num_classes"], **spec["kwargs"])
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit the model in the evidence: {str(e).splitlines()[0]}") from None
    return model.eval(), state


def verify(
    artifact: str | Path,
    evidence_path: str | Path,
    data: Data,
    *,
    recheck: bool = False,
    device: str | torch.device | None = None,
) -> Verification:
    """Re-judge ``artifact`` (an exported or quantized copy) against ``evidence_path``'s checks.

    Weights equal to the verified model's (same ``tensors_sha256``) keep the recorded verdict unless
    ``recheck``; other weights are measured again and judged against the references recorded at
    forget time (the oracles' values, the per-row never-trained statistics), so no model is retrained."""
    ev = read_json(evidence_path)
    if ev.get("schema") != SCHEMA:
        raise ValueError(f"{evidence_path} is not an obliviate evidence file (schema {ev.get('schema')!r})")
    folder = Path(evidence_path).parent
    if ev["model"].get("kind") in ("sisa", "certified"):
        return _verify_guaranteed(Path(artifact), ev, folder)
    if (folder / ledger.LEDGER).exists():
        report = ledger.verify(folder)
        if not report.ok:
            raise ValueError(f"the evidence's ledger does not verify: {report}")
    fp = data_fingerprint(data)
    if fp != ev["data"]["fingerprint"]:
        raise ValueError(f"the data's fingerprint {fp} differs from the evidence's ({ev['data']['fingerprint']})")
    model, state = load_artifact(artifact, ev["model"].get("spec"))
    same = tensors_sha256(state) == ev["model"]["after"]["tensors_sha256"]
    ids = read_json(folder / IDS) if (folder / IDS).exists() else None
    if ids is None:
        raise ValueError(f"{folder / IDS} is missing: the resolved rows are needed to re-run the checks")
    if ids_sha256(ids["ids"], ids["n"]) != ev["resolution"]["ids_sha256"]:
        raise ValueError(f"{folder / IDS} does not match the evidence's ids hash")
    full = ForgetSplit.from_ids(ids["n"], ids["ids"])
    earlier = set(ids.get("earlier", []))
    if earlier:
        alive = torch.as_tensor([i for i in range(ids["n"]) if i not in earlier], dtype=torch.long)
        data = data.subset_train(alive)
        split = ForgetSplit(torch.searchsorted(alive, full.forget_ids), len(alive))
    else:
        split = full
    recorded = [C.Check.from_dict(c) for c in ev["checks"]]
    if same and not recheck:
        return Verification(Path(artifact), True, recorded, ev["verdict"])
    ctx = C.Context(data, split, ev["method"]["seed"], torch.device(device) if device is not None else None)
    redone = []
    for c in recorded:
        if c.kind in ("integrity", "guarantee"):  # facts of the forget run, not of these weights
            if c.kind == "guarantee":
                c.required = False
                c.note = "holds for the model the forget run wrote, not for other weights"
            redone.append(c)
            continue
        c.value, c.verdict = None, "NOT RUN"
        redone.append(C.judge(c, model, ctx))
    return Verification(Path(artifact), same, redone, C.overall(redone))


def _verify_guaranteed(artifact: Path, ev: dict[str, Any], folder: Path) -> Verification:
    """A SISA or certified model's guarantee holds for the files ``forget`` wrote: an artifact with the
    same bytes keeps the recorded verdict; any other is refused (its weights are not what was certified)."""
    report = ledger.verify(folder)
    if not report.ok:
        raise ValueError(f"the evidence's ledger does not verify: {report}")
    kind, after = ev["model"]["kind"], ev["model"]["after"]
    file = artifact / after["path"] if artifact.is_dir() else artifact
    if not file.is_file():
        raise ValueError(f"{artifact} holds no {after['path']}")
    if ledger.sha256_file(file) != after["sha256"]:
        raise ValueError(
            f"{file} is not the {kind} model the evidence certifies (sha256 differs): its guarantee covers only the "
            "model `obliviate forget` wrote, and another artifact of it cannot be re-checked"
        )
    return Verification(artifact, True, [C.Check.from_dict(c) for c in ev["checks"]], ev["verdict"])


def open_data(model_dir: str | Path, data: str | Path | None = None) -> tuple[Data, dict[str, Any]]:
    """The data a saved model was trained on, and how it was read (for the evidence): a file read again
    with the run's options, encoder or tokenizer (``obliviate train --data``; ``data`` overrides the
    recorded path), else a built-in dataset or ``.npz`` (``data`` or the manifest's ``dataset``)."""
    from ..data import datasets as ds
    from ..data.user import from_run

    folder = Path(model_dir)
    kind = G.detect(folder)
    if kind is not None and not (folder.is_dir() and (folder / "manifest.json").exists()):
        if data is None:
            raise ValueError(
                f"{folder} is a {kind} model, which records no data file: pass --data (a .npz or built-in name)"
            )
        return ds.load(str(data)), {"source": {"kind": "dataset", "name": str(data)}}
    if not (folder / "manifest.json").exists():
        raise ValueError(f"{folder} has no manifest.json: pass a model folder written by obliviate train / forget")
    manifest = read_json(folder / "manifest.json")
    entry = manifest.get("data")
    if isinstance(entry, dict) and "kind" in entry:
        loaded = from_run(folder, data)
        return loaded, {"source": {k: entry[k] for k in ("kind", "path", "options") if k in entry}}
    name = str(data) if data is not None else manifest.get("dataset")
    if not name:
        raise ValueError(f"{folder}'s manifest records no training data: pass --data")
    return ds.load(name), {"source": {"kind": "dataset", "name": name}}
