"""Alias kept for the API contract: text datasets live in :mod:`obliviate.data.text`."""

from ..data.text import TextDataset

__all__ = ["TextDataset"]
