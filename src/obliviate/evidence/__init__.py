"""Deletion requests, the evidence bundle, the hash-chained ledger and re-verification (issue 16).

``resolve`` turns a request (ids, an SQL predicate, a subject, an entity string) into training rows;
``forget`` unlearns them and writes ``evidence.json`` / ``evidence.html`` / ``ledger.jsonl`` beside
the new model; ``verify_ledger`` re-checks a folder's chain; ``verify`` re-judges a deployed copy.
"""

from .bundle import Bundle, Plan, Verification, forget, open_data, plan, tensors_sha256, verify
from .checks import Check, overall
from .ledger import LedgerReport, head
from .ledger import verify as verify_ledger
from .requests import Candidate, Request, Resolution, ids_sha256, resolve

__all__ = [
    "Bundle",
    "Candidate",
    "Check",
    "LedgerReport",
    "Plan",
    "Request",
    "Resolution",
    "Verification",
    "forget",
    "head",
    "open_data",
    "ids_sha256",
    "overall",
    "plan",
    "resolve",
    "tensors_sha256",
    "verify",
    "verify_ledger",
]
