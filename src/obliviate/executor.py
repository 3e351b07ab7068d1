"""Where independent jobs run: in this process (the default) or on a Ray cluster.

Bench cells, oracle trainings and SISA shards are *jobs*: a top-level function and one picklable
argument (plain dicts and paths, never live models), whose results are written to disk by the job
itself. That keeps every executor interchangeable and every run resumable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol


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


class RayExecutor:
    """Jobs as Ray tasks: on a local Ray (started on first use) or an existing cluster (``address``).

    Ray is the multi-machine path, not a speed-up on one small machine (start-up ~2-3 s). Results
    come back in submission order, so runs are reproducible whatever finishes first. Install the
    extra: ``pip install 'obliviate[ray]'``.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, **init: Any) -> None:
        try:
            import ray
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("the Ray executor needs ray: pip install 'obliviate[ray]'") from None
        self._ray = ray
        if not ray.is_initialized():
            opts = {"address": address} if address else {"num_cpus": num_cpus}
            ray.init(**opts, include_dashboard=False, log_to_driver=False, **init)

    def map(self, fn: Callable[[Any], Any], jobs: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        jobs = list(jobs)
        remote = self._ray.remote(num_cpus=1)(fn)
        refs = [remote.remote(job) for job in jobs]
        for job, ref in zip(jobs, refs):
            yield job, self._ray.get(ref)


EXECUTORS: dict[str, Callable[..., Executor]] = {"in-process": InProcess, "ray": RayExecutor}


def get_executor(name: str = "in-process", **kwargs: Any) -> Executor:
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; available: {sorted(EXECUTORS)}")
    return EXECUTORS[name](**kwargs)
