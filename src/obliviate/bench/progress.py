"""The grid's progress display: a rich bar on terminals and one line per finished job everywhere."""

from __future__ import annotations

import time
from typing import Any


class Progress:
    """Counts planned and finished jobs per kind and prints an ETA.

    The ETA is per kind of job (originals, oracles, tunings and cells differ by 10-100x in cost):
    remaining jobs of each kind times that kind's mean so far (the overall mean for unseen kinds).
    ``enabled``: True / False forces the bar (False also silences the per-job lines); None shows
    the bar on terminals only.
    """

    def __init__(self, enabled: bool | None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.console = Console(stderr=True)
        if not self.console.is_terminal:  # CI logs: one unwrapped line per job
            self.console.width = 200
        self.quiet = enabled is False
        self.bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta {task.fields[eta]}"),
            console=self.console,
            disable=not (enabled if enabled is not None else self.console.is_terminal),
        )
        self.task = self.bar.add_task("bench", total=0, eta="?")
        self.planned: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.spent: dict[str, float] = {}
        self.last = time.perf_counter()

    def __enter__(self) -> Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def plan(self, kind: str, n: int) -> None:
        self.planned[kind] = self.planned.get(kind, 0) + n
        self.bar.update(self.task, total=sum(self.planned.values()))

    def eta(self) -> float:
        seen = sum(self.done.values())
        overall = sum(self.spent.values()) / seen if seen else 0.0
        return sum(
            (self.planned[k] - self.done.get(k, 0)) * (self.spent[k] / self.done[k] if self.done.get(k) else overall)
            for k in self.planned
        )

    def step(self, kind: str, what: str) -> None:
        now = time.perf_counter()
        self.done[kind] = self.done.get(kind, 0) + 1
        self.spent[kind] = self.spent.get(kind, 0.0) + now - self.last
        self.last = now
        eta = f"{self.eta() / 60:.1f} min"
        self.bar.update(self.task, advance=1, description=what[:40], eta=eta)
        if self.quiet:
            return
        done, total = sum(self.done.values()), sum(self.planned.values())
        self.bar.console.print(f"[{done}/{total}, {total - done} left, eta {eta}] {what}", highlight=False)
