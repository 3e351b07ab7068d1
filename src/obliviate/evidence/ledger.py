"""The append-only, hash-chained request ledger (``ledger.jsonl``) every model folder carries.

Each line is the RFC 8785 canonical JSON (JCS) of one entry; an entry's hash is
``H(line) = SHA-256(b"obliviate/ledger/v1\\x00" + line)`` and the next entry stores it as ``prev``
(the genesis entry's ``prev`` is 64 zeros), so editing, dropping or reordering any earlier line
breaks every later link. ``seq`` counts up from 0 and ``time`` never decreases. Artifacts an entry
names with a ``path`` (the model, the evidence, the resolved ids) are re-hashed by :func:`verify`.

Tamper-evident, not tamper-proof: whoever can write the folder can rewrite the whole chain; only
a head (:func:`head`, ``SEQ:HASH``) kept elsewhere (the request ticket, an e-mail to the DPO) shows
that. Entries inherited from the input model's folder name files of that folder: their paths are
reported "not checked" here, their hashes stay in the chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import rfc8785
import torch

LEDGER = "ledger.jsonl"
DOMAIN = b"obliviate/ledger/v1\x00"
GENESIS_PREV = "0" * 64
KINDS = ("genesis", "forget", "retrain", "verify", "anchor", "key")


def canonical(obj: Any) -> bytes:
    """RFC 8785 bytes of ``obj`` (keys sorted, no whitespace, ECMAScript numbers; NaN refused)."""
    return rfc8785.dumps(obj)


def entry_hash(line: bytes) -> str:
    return hashlib.sha256(DOMAIN + line).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_lines(folder: str | Path) -> list[bytes]:
    path = Path(folder) / LEDGER
    if not path.exists():
        return []
    return [line for line in path.read_bytes().split(b"\n") if line]


def head(folder: str | Path) -> str:
    """``SEQ:HASH`` of the last entry, to keep somewhere the folder's writer cannot reach."""
    lines = read_lines(folder)
    if not lines:
        raise ValueError(f"{folder} has no {LEDGER}")
    return f"{json.loads(lines[-1])['seq']}:{entry_hash(lines[-1])}"


def make_entry(previous: list[bytes], kind: str, artifacts: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The next entry after the ``previous`` lines (its ``seq``, ``prev`` and ``time`` filled in)."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger entry kind {kind!r}; use one of {KINDS}")
    prev = entry_hash(previous[-1]) if previous else GENESIS_PREV
    time = now()
    if previous:
        time = max(time, json.loads(previous[-1])["time"])  # never decreasing, even if the clock steps back
    return {"v": 1, "seq": len(previous), "kind": kind, "prev": prev, "time": time, "artifacts": artifacts, **fields}


def write(folder: str | Path, lines: list[bytes]) -> None:
    from ..io import atomic_write_text

    atomic_write_text(Path(folder) / LEDGER, "".join(line.decode() + "\n" for line in lines))


@dataclass
class LedgerReport:
    """What :func:`verify` found: ``ok``, the first broken line (1-based) and why, and notes on
    artifacts it could not check."""

    ok: bool
    entries: int
    head: str | None = None
    broken_line: int | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)
    unreadable: bool = False

    def __str__(self) -> str:
        if self.ok:
            return f"ledger OK: {self.entries} entries, head {self.head}"
        where = f"line {self.broken_line}: " if self.broken_line else ""
        return f"ledger BROKEN at {where}{self.problem}"


def verify(folder: str | Path, *, check_artifacts: bool = True) -> LedgerReport:
    """Re-check every link of ``folder``'s ledger and the hashes of the files its last entries name.

    Checks, per line: strict JSON equal to its own canonical form; ``seq`` = line number − 1;
    ``prev`` = H(previous line) (64 zeros for the first); ``time`` not before the previous entry's;
    each artifact with a ``path`` that this folder holds re-hashes to its ``sha256``; and the
    evidence file an entry names records the entry's ``prev`` as ``previous_entry``.
    """
    folder = Path(folder)
    path = folder / LEDGER
    if not path.exists():
        return LedgerReport(False, 0, problem=f"{path} does not exist", unreadable=True)
    try:
        lines = read_lines(folder)
    except OSError as e:
        return LedgerReport(False, 0, problem=f"{path} cannot be read: {e}", unreadable=True)
    if not lines:
        return LedgerReport(False, 0, problem=f"{path} is empty", unreadable=True)
    notes: list[str] = []
    prev_hash, prev_time = GENESIS_PREV, ""
    for i, line in enumerate(lines):
        n = i + 1
        try:
            entry = json.loads(line, object_pairs_hook=_no_duplicates)
        except ValueError as e:
            return LedgerReport(False, len(lines), broken_line=n, problem=f"not valid JSON ({e})")
        try:
            canon = canonical(entry)
        except Exception as e:  # rfc8785 raises its own error types for out-of-domain numbers
            return LedgerReport(False, len(lines), broken_line=n, problem=f"not canonical JSON ({e})")
        if canon != line:
            return LedgerReport(False, len(lines), broken_line=n, problem="not in canonical (RFC 8785) form")
        if entry.get("seq") != i:
            return LedgerReport(False, len(lines), broken_line=n, problem=f"seq is {entry.get('seq')!r}, expected {i}")
        if entry.get("prev") != prev_hash:
            return LedgerReport(
                False,
                len(lines),
                broken_line=n,
                problem=f"prev {str(entry.get('prev'))[:16]}… does not match the hash of line {i} "
                f"({prev_hash[:16]}…): an earlier line was changed, removed or reordered",
            )
        if not isinstance(entry.get("time"), str) or entry["time"] < prev_time:
            return LedgerReport(False, len(lines), broken_line=n, problem="time goes backwards")
        if check_artifacts:
            problem = _check_artifacts(folder, entry, notes, n)
            if problem:
                return LedgerReport(False, len(lines), broken_line=n, problem=problem, notes=notes)
        prev_hash, prev_time = entry_hash(line), entry["time"]
    if check_artifacts and json.loads(lines[-1]).get("folder_id") != _folder_id(folder):
        return LedgerReport(
            False,
            len(lines),
            broken_line=len(lines),
            problem=f"the newest entry was not written for this folder ({FOLDER_ID} differs): it is a copy",
            notes=notes,
        )
    return LedgerReport(True, len(lines), head=f"{len(lines) - 1}:{prev_hash}", notes=notes)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise ValueError(f"duplicate keys {sorted(dupes)}")
    return dict(pairs)


def _check_artifacts(folder: Path, entry: dict[str, Any], notes: list[str], n: int) -> str | None:
    own = entry.get("folder_id") == _folder_id(folder)
    for name, art in (entry.get("artifacts") or {}).items():
        if not isinstance(art, dict) or "path" not in art:
            continue
        file = folder / art["path"]
        if not own:
            notes.append(f"line {n}: {name} ({art['path']}) belongs to an earlier model folder: not checked")
            continue
        if not file.exists():
            return f"{name}: {art['path']} is missing"
        if sha256_file(file) != art.get("sha256"):
            return f"{name}: {art['path']} does not match its recorded sha256 (the file was changed)"
        if name == "evidence.json":
            recorded = json.loads(file.read_text()).get("previous_entry")
            if recorded != entry["prev"]:
                return "evidence.json's previous_entry does not match the entry's prev"
    return None


#: the name of the file that ties a ledger entry to the folder it was written for
FOLDER_ID = ".obliviate-folder"


def _folder_id(folder: Path) -> str | None:
    f = folder / FOLDER_ID
    return f.read_text().strip() if f.exists() else None


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over (name, dtype, shape, bytes) of every tensor, sorted by name: the same weights
    hash the same whichever file format or key order holds them."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
