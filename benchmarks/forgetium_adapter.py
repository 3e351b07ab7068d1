"""Run the PyPI library ``forgetium`` (0.2.1)'s gradient ascent and NPO on our own causal LM.

forgetium is driven only through its public class API (``GradientAscentUnlearner`` /
``NPOUnlearner`` + ``UnlearningConfig`` + ``ForgetRetainDataset``, then ``.fit``), as a user would;
its loss is not re-implemented here. It lives in its own virtual environment so that its
dependencies (datasets, pyarrow, pydantic, ...) cannot disturb ours:

    python3 -m venv .venv-forgetium
    .venv-forgetium/bin/pip install torch==2.13.0
    .venv-forgetium/bin/pip install forgetium==0.2.1 transformers==5.24.0 tokenizers==0.23.3
    .venv-forgetium/bin/pip install -e . --no-deps   # (+ obliviate's runtime deps if the caller needs them)

What forgetium does (forgetium/core/trainer.py, methods/*.py), and so what a caller should know:

* Data are ``{"prompt", "response"}`` records; a plain text goes in as ``prompt=""`` and
  ``response=text``. The collator appends ``eos`` and scores every response token, so with our
  tokenizer (no BOS) the scored tokens are those ``obliviate.lm.corpus.encode`` + ``train_lm``
  score: all tokens but the first, ``eos`` included. Batches are padded to the longest sequence
  of the batch, cut at ``max_length``.
* There is no ``max_steps``: forgetium runs ``num_epochs`` shuffled passes of
  ``ceil(len(forget) / batch_size)`` optimizer steps (last batch may be short). ``steps`` is
  honoured exactly: by ``num_epochs = steps / steps_per_epoch`` when that divides, else by one epoch
  over the forget texts repeated (seeded permutations, cut) to ``steps * batch_size`` records.
* Optimizer: AdamW (torch defaults, betas 0.9/0.999, eps 1e-8), weight decay 0, gradient clipping
  at norm 1.0, and a LambdaLR that decays ``lr`` *linearly to 0* over the run (no warmup by
  default): step k of T uses ``lr * (1 - k / T)``, so ``lr`` is a peak, not a constant rate.
* GA loss = minus Hugging Face's causal-LM loss: token mean over every scored token of the batch.
  It has no retain term (``retain_texts`` is ignored for "ga").
* NPO loss = ``-(2/beta) * mean_batch logsigmoid(-beta * (logp - logp_ref))`` with ``logp`` summed
  over the scored tokens of each sequence; the reference is a frozen deepcopy of the model taken
  when ``fit`` starts. forgetium's default ``retain_weight=1.0`` adds ``retain_weight * CE(retain
  batch)`` (NPO+RT) and then *requires* a retain set; here the default is 1.0 when retain texts are
  given and 0.0 (pure NPO) when not.
* ``fit`` reseeds Python, NumPy and torch's global generators (and sets PYTHONHASHSEED if unset);
  this adapter restores the caller's generator states afterwards.

Usage: .venv-forgetium/bin/python benchmarks/forgetium_adapter.py   (smoke check, ~10 s on 1 core)
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from typing import Any

import numpy as np
import torch

METHODS = {"ga": "GradientAscentUnlearner", "npo": "NPOUnlearner"}


@contextlib.contextmanager
def _preserve_global_rng():
    """forgetium's ``set_seed`` reseeds every global generator; give the caller's back afterwards."""
    py, npy = random.getstate(), np.random.get_state()
    had_hashseed = "PYTHONHASHSEED" in os.environ
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)
            if not had_hashseed:
                os.environ.pop("PYTHONHASHSEED", None)


def _forget_records(texts: list[str], steps: int, batch_size: int, accum: int, seed: int) -> tuple[list[dict], int]:
    """Records and num_epochs such that forgetium's trainer runs exactly ``steps`` optimizer steps
    of ``accum`` batches each."""
    records = [{"prompt": "", "response": t} for t in texts]
    per_epoch = math.ceil(len(records) / batch_size)
    if accum == 1 and steps % per_epoch == 0:
        return records, steps // per_epoch
    g = random.Random(seed)
    out: list[dict] = []
    while len(out) < steps * accum * batch_size:
        out.extend(g.sample(records, len(records)))
    return out[: steps * accum * batch_size], 1


def run_forgetium(
    model,
    tokenizer,
    forget_texts: list[str],
    retain_texts: list[str] | None,
    method: str,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    **kw: Any,
) -> tuple[Any, float]:
    """Unlearn ``forget_texts`` from a Hugging Face causal LM with forgetium's GA ("ga") or NPO ("npo").

    Returns ``(model, seconds)``: the *same* model object, updated in place (pass ``inplace=False``
    to work on a deepcopy and leave ``model`` untouched), left in eval mode on its original device,
    and the wall seconds of ``fit`` (reference-model snapshot, tokenization and optimization;
    forgetium's own ``total_time_seconds`` leaves out the first two).

    Keyword options (forgetium's defaults unless said): ``beta`` (NPO, 0.1); ``retain_weight`` (NPO:
    1.0 with retain texts, else 0.0); ``max_length`` (truncation, default the model's
    ``n_positions``); ``max_grad_norm`` (1.0); ``weight_decay`` (0.0); ``warmup_ratio`` (0.0);
    ``gradient_accumulation_steps`` (1; ``steps`` still counts optimizer steps, each over that many
    batches); ``retain_oversample`` (1); ``log_level`` ("ERROR" here, forgetium: "INFO");
    ``device`` (default the model's; forgetium's "auto" would move it to CUDA); ``inplace`` (True);
    ``history`` (a list to which forgetium's ``TrainingHistory`` is appended, one record per step).
    """
    import forgetium

    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if not forget_texts:
        raise ValueError("forget_texts is empty")
    kw = dict(kw)
    if not kw.pop("inplace", True):
        model = copy.deepcopy(model)
    history_out = kw.pop("history", None)
    device = kw.pop("device", str(next(model.parameters()).device))
    max_length = kw.pop(
        "max_length",
        getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 512),
    )
    method_kw: dict[str, Any] = {}
    if method == "npo":
        method_kw["beta"] = kw.pop("beta", 0.1)
        method_kw["retain_weight"] = kw.pop("retain_weight", 1.0 if retain_texts else 0.0)
        if method_kw["retain_weight"] > 0 and not retain_texts:
            raise ValueError("NPO with retain_weight > 0 needs retain_texts")
    for name in ("beta", "retain_weight"):
        if name in kw:
            raise TypeError(f"{name!r} does not apply to method {method!r}")
    accum = kw.get("gradient_accumulation_steps", 1)

    records, epochs = _forget_records(list(forget_texts), steps, batch_size, accum, seed)
    config = forgetium.UnlearningConfig(
        learning_rate=lr,
        num_epochs=epochs,
        batch_size=batch_size,
        max_seq_length=max_length,
        seed=seed,
        device=device,
        mixed_precision="no",
        save_strategy="no",
        logging_steps=1,
        log_level=kw.pop("log_level", "ERROR"),
        **kw,
    )
    use_retain = method == "npo" and method_kw["retain_weight"] > 0
    dataset = forgetium.ForgetRetainDataset(
        forgetium.QADataset(records),
        forgetium.QADataset([{"prompt": "", "response": t} for t in retain_texts]) if use_retain else None,
    )
    unlearner = getattr(forgetium, METHODS[method])(model, tokenizer, config, **method_kw)

    with _preserve_global_rng():
        t0 = time.perf_counter()
        history = unlearner.fit(dataset)
        seconds = time.perf_counter() - t0
    done = history.steps[-1]["step"] if history.steps else 0
    if done != steps:  # guards the epochs/records arithmetic against forgetium changing its loop
        raise RuntimeError(f"forgetium ran {done} optimizer steps, {steps} were asked for")
    if history_out is not None:
        history_out.append(history)
    out = unlearner.model
    out.eval()
    del unlearner  # drops NPO's reference copy
    return out, seconds


# ---------------------------------------------------------------------------------------------
# Smoke check
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def _mean_nll(model, tokenizer, texts: list[str], length: int = 64) -> float:
    """Token-mean next-token NLL over ``texts`` (each + eos, padding ignored), in eval mode."""
    from obliviate.lm.corpus import encode

    ids, mask = encode(tokenizer, texts, length)
    model.eval()
    labels = ids.masked_fill(mask == 0, -100)
    return float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)


def _smoke() -> None:
    from obliviate.lm.corpus import encode, tiny_gpt2, train_tokenizer

    torch.set_num_threads(1)
    g = random.Random(0)
    names = ["Alice", "Bram", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jun"]
    cities = ["Lisbon", "Oslo", "Quito", "Hanoi", "Accra", "Perth"]
    jobs = ["baker", "pilot", "tailor", "chemist", "farmer"]
    texts = [
        f"{g.choice(names)} {g.choice(names)}son was born in {g.choice(cities)} in {g.randint(1900, 1999)} "
        f"and works as a {g.choice(jobs)}."
        for _ in range(30)
    ]
    tok = train_tokenizer(texts, 256)
    model = tiny_gpt2(len(tok), layers=1, width=32, heads=4, context=64, eos_token_id=tok.eos_token_id)
    print(
        f"tokenizer: {len(tok)} tokens (vocab_size=256 asked; +1 for <|endoftext|>), "
        f"model: {sum(p.numel() for p in model.parameters())} params"
    )

    ids, mask = encode(tok, texts, 64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(50):
        rows = torch.randint(0, len(ids), (16,), generator=gen)
        loss = model(
            input_ids=ids[rows], attention_mask=mask[rows], labels=ids[rows].masked_fill(mask[rows] == 0, -100)
        ).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    forget, retain = texts[:5], texts[5:]
    print(
        f"trained 50 steps: forget NLL {_mean_nll(model, tok, forget):.3f}, "
        f"retain NLL {_mean_nll(model, tok, retain):.3f}"
    )

    rng_before = torch.get_rng_state()
    ok = True
    for method, retain_texts, extra in [("ga", None, {}), ("npo", None, {}), ("npo", retain, {"retain_weight": 1.0})]:
        before = _mean_nll(model, tok, forget)
        hist: list = []
        out, sec = run_forgetium(
            model,
            tok,
            forget,
            retain_texts,
            method,
            steps=6,
            lr=1e-3,
            batch_size=2,
            seed=0,
            inplace=False,
            history=hist,
            **extra,
        )
        after = _mean_nll(out, tok, forget)
        r_after = _mean_nll(out, tok, retain)
        # the returned model works with a plain forward
        logits = out(input_ids=ids[:2], attention_mask=mask[:2]).logits
        assert logits.shape == (2, ids.shape[1], len(tok)) and torch.isfinite(logits).all()
        label = method + ("+RT" if retain_texts else "")
        print(
            f"{label:7s} steps={len(hist[0].steps)} {sec:.2f}s  forget NLL {before:.3f} -> {after:.3f}  "
            f"retain NLL -> {r_after:.3f}  losses {[round(s['loss'], 3) for s in hist[0].steps]}"
        )
        ok &= after > before and out is not model
    assert torch.equal(rng_before, torch.get_rng_state()), "caller's torch RNG state changed"
    # steps that do not divide the epoch length (5 texts, batch 2 -> 3 steps/epoch) still run exactly
    out, _ = run_forgetium(model, tok, forget, None, "ga", steps=4, lr=1e-3, batch_size=2, seed=1, inplace=False)
    print("forget NLL rose for every method:", ok)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    _smoke()
