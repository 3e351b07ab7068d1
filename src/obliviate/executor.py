"""Where independent jobs run: in this process (the default) or, later, on a Ray cluster.

Bench cells, oracle trainings and SISA shards are *jobs*: a top-level function and one picklable
argument (plain dicts and paths, never live models), whose results are written to disk by the job
itself. That keeps every executor interchangeable and every run resumable.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Protocol


class Executor(Protocol):
    """Runs ``fn(job)`` for every job; yields ``(job, result)`` pairs as jobs finish."""

    name: str

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]: ...


class InProcess:
    """Jobs one after another in this process: no start-up cost, the tested path."""

    name = "in-process"

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        for job in jobs:
            yield job, fn(job)


EXECUTORS: dict[str, Callable[..., Executor]] = {"in-process": InProcess}


def get_executor(name: str = "in-process", **kwargs: Any) -> Executor:
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; available: {sorted(EXECUTORS)}")
    return EXECUTORS[name](**kwargs)
