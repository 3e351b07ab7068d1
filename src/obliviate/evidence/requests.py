"""Deletion requests as people state them, resolved to training-row ids before any work.

A request is one string:

* ``ids: 3, 17, 40`` (training-set positions) or ``ids: @file.txt`` (positions in a file, separated
  by spaces, commas or newlines, or the ``id`` column of a CSV such as ``obliviate detect --out``);
* ``subject = 'u-4711'`` or ``subject IN ('u-4711', 'u-4712')``: every row of those people, matched
  exactly against the data's subject column (values are compared, never spliced into SQL);
* ``entity: 'Adam Smith'``: every text row that contains the string (case-insensitive); rows that
  look like near-duplicates or paraphrases (TF-IDF cosine neighbours of the matched rows) are
  *listed for review with their scores, never added*: a false positive would erase someone else's data;
* anything else (optionally prefixed ``where:``) is an SQL ``WHERE`` clause over the training table,
  evaluated by DuckDB with external access off (:meth:`obliviate.data.ForgetSplit.where`).

The resolved set is fixed by :func:`ids_sha256`, the SHA-256 of the canonical JSON of
``{"ids": [...], "n": N}`` (RFC 8785), so anyone holding ``resolved_ids.json`` can recompute it.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.datasets import Data
from ..data.splits import ForgetSplit, table_of
from ..data.text import TextDataset

RULES = ("ids", "predicate", "subject", "entity")
#: TF-IDF review candidates: at most this many, with cosine similarity at least this (reference §5:
#: "top 20 at >= 0.5", no standard threshold exists)
CANDIDATE_TOP, CANDIDATE_MIN_SCORE = 20, 0.5

_SUBJECT = re.compile(r"^\s*subject\s*(==|=|\bin\b)\s*(.+?)\s*$", re.IGNORECASE | re.DOTALL)
_PREFIXED = re.compile(r"^\s*(ids|entity|where)\s*:\s*(.*?)\s*$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Request:
    """A parsed request: its ``rule`` (ids, predicate, subject, entity), the original ``text`` and
    the rule's argument (a list of ids, an SQL clause, a list of subject values, an entity string)."""

    rule: str
    text: str
    arg: Any

    @classmethod
    def parse(cls, text: str) -> Request:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                "the request is empty: give ids: 1,2,3, subject = 'u-1', entity: 'name' or an SQL condition"
            )
        m = _SUBJECT.match(text)
        if m:
            return cls("subject", text, _literals(m.group(2), many=m.group(1).lower() == "in", text=text))
        m = _PREFIXED.match(text)
        if m is None:
            return cls("predicate", text, text.strip())
        kind, arg = m.group(1).lower(), m.group(2)
        if not arg:
            raise ValueError(f"request {text!r} names no {kind}")
        if kind == "where":
            return cls("predicate", text, arg)
        if kind == "entity":
            value = _literals(arg, many=False, text=text) if arg[:1] in "'\"" else [arg]
            if not str(value[0]).strip():
                raise ValueError(f"request {text!r}: the entity string is empty")
            return cls("entity", text, str(value[0]))
        return cls("ids", text, _ids(arg, text))


def _literals(raw: str, *, many: bool, text: str) -> list[Any]:
    """``'u-1'`` -> ['u-1']; ``('a', 'b')`` -> ['a', 'b']; numbers stay numbers. SQL's doubled quote
    (``'O''Brien'``) is read as one quote."""
    src = raw.strip()
    if many and not (src.startswith("(") and src.endswith(")")):
        raise ValueError(f"request {text!r}: IN takes a parenthesised list, e.g. subject IN ('u-1', 'u-2')")
    src = re.sub(r"'((?:[^']|'')*)'", lambda m: repr(m.group(1).replace("''", "'")), src)
    try:
        value = ast.literal_eval(src)
    except (ValueError, SyntaxError):
        raise ValueError(f"request {text!r}: {raw!r} is not a quoted string, a number or a list of them") from None
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    if not values or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"request {text!r}: {raw!r} is not a quoted string, a number or a list of them")
    return values


def _ids(arg: str, text: str) -> list[int]:
    source = arg
    if arg.startswith("@"):
        path = Path(arg[1:])
        if not path.exists():
            raise ValueError(f"request {text!r}: id file {path} does not exist")
        source = path.read_text()
        first = source.split("\n", 1)[0].split(",")
        if "id" in [c.strip() for c in first]:  # a CSV with an id column (obliviate detect --out writes one)
            col = [c.strip() for c in first].index("id")
            source = "\n".join(line.split(",")[col] for line in source.split("\n")[1:] if line.strip())
    tokens = [t for t in re.split(r"[\s,]+", source) if t]
    try:
        return [int(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("-").isdigit())
        raise ValueError(f"request {text!r}: {bad!r} is not a training-row id (an integer)") from None


@dataclass(frozen=True)
class Candidate:
    """A row that resembles the matched rows without matching: listed for review, never added."""

    id: int
    score: float
    method: str = "tfidf-cosine"
    decision: str = "listed for review, not added"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 4), "method": self.method, "decision": self.decision}


@dataclass(frozen=True)
class Resolution:
    """A request resolved: the ``split`` it names, its ``ids_sha256``, review ``candidates`` (entity
    requests) and a ``sample`` of the matched rows for the operator to look at before any work (the
    sample is shown, never written into the evidence: the bundle holds ids and hashes only)."""

    request: Request
    split: ForgetSplit
    ids_sha256: str
    sample: pd.DataFrame
    candidates: tuple[Candidate, ...] = field(default=())
    subject_column: str | None = None

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.split.forget_ids.tolist()]

    def to_dict(self) -> dict[str, Any]:
        """The evidence's ``resolution`` block."""
        out: dict[str, Any] = {
            "rule": self.request.rule,
            "n_rows": len(self.split),
            "n_train": self.split.n,
            "ids_sha256": self.ids_sha256,
            "candidates": [c.to_dict() for c in self.candidates],
        }
        if self.subject_column is not None:
            out["subject_column"] = self.subject_column
        return out

    def describe(self) -> str:
        pct = 100 * len(self.split) / self.split.n
        text = (
            f"request {self.request.text!r} ({self.request.rule}) matches {len(self.split)} of "
            f"{self.split.n} training rows ({pct:.2f}%); ids sha256 {self.ids_sha256[:16]}…"
        )
        if self.candidates:
            text += f"; {len(self.candidates)} similar rows listed for review (not added)"
        return text


def ids_sha256(ids: torch.Tensor | list[int], n: int) -> str:
    """SHA-256 of the RFC 8785 canonical JSON ``{"ids": sorted ids, "n": n}``."""
    from .ledger import canonical

    sorted_ids = sorted(int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids))
    return hashlib.sha256(canonical({"ids": sorted_ids, "n": int(n)})).hexdigest()


def texts_of(data: Data) -> list[str] | None:
    """The training rows as text: a text dataset's rows, or a table's string columns joined."""
    train = data.train
    if isinstance(train, TextDataset):
        return train.texts
    table = data.train_table
    if isinstance(table, pd.DataFrame):
        cols = [c for c in table.columns if table[c].dtype == object or pd.api.types.is_string_dtype(table[c])]
        if cols:
            return table[cols].astype(str).agg(" ".join, axis=1).tolist()
    return None


def subjects_of(data: Data, column: str | None = None) -> tuple[np.ndarray, str]:
    """Per training row, the subject it belongs to, and the column that says so: ``column`` (or the
    data's own ``subject`` column) of ``data.train_table``, else the integer ``groups`` codes."""
    table = data.train_table
    column = column or data.subject
    if column is not None:
        if not isinstance(table, pd.DataFrame) or column not in table.columns:
            have = list(table.columns) if isinstance(table, pd.DataFrame) else []
            raise ValueError(f"subject column {column!r} is not in the training table (columns: {have})")
        return table[column].to_numpy(), column
    if data.groups is not None:
        return np.asarray(data.groups), "groups"
    raise ValueError(
        "this data names no subject per row: train with --subject COLUMN (ob.datasets.from_file(..., subject=))"
    )


def resolve(
    request: str | Request,
    data: Data,
    *,
    subject_column: str | None = None,
    sample_size: int = 5,
    candidate_top: int = CANDIDATE_TOP,
    candidate_min_score: float = CANDIDATE_MIN_SCORE,
) -> Resolution:
    """Resolve ``request`` against ``data``'s training rows (see the module docstring for the forms).

    Raises ValueError naming the input for a request that matches no row or every row, an unknown
    column or subject, or ids out of range: all before any work.
    """
    req = request if isinstance(request, Request) else Request.parse(request)
    n = len(data.train)
    candidates: tuple[Candidate, ...] = ()
    column = None
    if req.rule == "ids":
        try:
            split = ForgetSplit.from_ids(data.train, req.arg)
        except ValueError as e:
            raise ValueError(f"request {req.text!r}: {e}") from None
    elif req.rule == "predicate":
        split = ForgetSplit.where(table_of(data.train, data.train_table), req.arg)
    elif req.rule == "subject":
        subjects, column = subjects_of(data, subject_column)
        as_text = pd.Series(subjects).astype(str).to_numpy()
        wanted = [str(v) for v in req.arg]
        missing = [v for v in wanted if v not in set(as_text)]
        if missing:
            raise ValueError(f"request {req.text!r}: no training row has {column} = {missing[0]!r}")
        split = _split_of(np.flatnonzero(np.isin(as_text, wanted)), n, req)
    else:
        texts = texts_of(data)
        if texts is None:
            raise ValueError(f"request {req.text!r}: entity requests need text rows (text data or string columns)")
        needle = req.arg.casefold()
        hits = np.array([needle in t.casefold() for t in texts])
        if not hits.any():
            raise ValueError(f"request {req.text!r}: no training row contains {req.arg!r}")
        split = _split_of(np.flatnonzero(hits), n, req)
        candidates = similar_rows(texts, split.forget_ids.numpy(), top=candidate_top, min_score=candidate_min_score)
    table = _display_table(data)
    sample = table.iloc[split.forget_ids[:sample_size].numpy()].reset_index(drop=True)
    return Resolution(req, split, ids_sha256(split.forget_ids, n), sample, candidates, column)


def _split_of(rows: np.ndarray, n: int, req: Request) -> ForgetSplit:
    if len(rows) == n:
        raise ValueError(f"request {req.text!r} matches every training row ({n}): nothing would be retained")
    return ForgetSplit(torch.as_tensor(rows, dtype=torch.long), n, kind=req.rule)


def _display_table(data: Data) -> pd.DataFrame:
    if isinstance(data.train, TextDataset):
        table = pd.DataFrame({"id": np.arange(len(data.train))})
        if data.train.texts is not None:
            table["text"] = data.train.texts
        return table
    return table_of(data.train, data.train_table)


def similar_rows(texts: list[str], matched: np.ndarray, *, top: int, min_score: float) -> tuple[Candidate, ...]:
    """Rows outside ``matched`` whose TF-IDF vector (word 1-2-grams, sublinear tf) has cosine
    similarity >= ``min_score`` with some matched row, the ``top`` highest first."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import linear_kernel

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)
    x = vec.transform(texts)
    others = np.setdiff1d(np.arange(len(texts)), matched)
    if len(others) == 0:
        return ()
    score = linear_kernel(x[others], x[matched]).max(axis=1)  # rows are L2-normalised: dot = cosine
    keep = np.flatnonzero(score >= min_score)
    order = keep[np.argsort(-score[keep], kind="stable")][:top]
    return tuple(Candidate(int(others[i]), float(score[i])) for i in order)
