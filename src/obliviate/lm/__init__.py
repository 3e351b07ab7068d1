"""Language-model unlearning (work in progress): the data layer of fictitious people comes first."""

from .people import ATTRIBUTES, QA, People, Person

__all__ = ["ATTRIBUTES", "QA", "People", "Person"]
