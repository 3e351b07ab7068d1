"""Every command and code block in the README and the docs runs as written.

- ``python`` blocks: per page, all blocks run in order in one fresh interpreter (one namespace, like a
  reader pasting them into one session), in an empty folder where ``benchmarks/`` and ``docs/`` point at the
  repository's (for their configs).
- ``bash`` blocks: every command runs with bash in that page's folder, in order, one test each.
- ``text`` / ``json`` blocks are output or synopses and are not run.
- A block a page pulls in from another file (``--8<-- "README.md:lm-quickstart"``, pymdownx.snippets)
  runs once, where it is written.

What does not run is listed below, each with its reason; the test fails when a listed block no
longer exists, so the lists stay true.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

#: every command and code block of the docs, run as written: minutes in all
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

#: shell commands that are not run (a prefix of the command) -> why
SKIP_COMMANDS = {
    "make demo": "the set-up itself (creates .venv, installs torch); the test suite runs inside it",
    "make test": "the set-up itself, then this whole suite: it would run itself",
    "obliviate lm-demo": "~8 min: trains a GPT-2 original and two oracles (800 steps each)",
    "obliviate report runs/lm-demo/grid": "needs the lm-demo's grid above (~8 min)",
    "obliviate bench benchmarks/fashion-mnist.yaml": "52 min on 2 cores (the Fashion-MNIST leaderboard)",
    "obliviate report runs/bench/fashion-mnist": "needs the 52-minute Fashion-MNIST grid above",
    "obliviate bench benchmarks/diffusion-fashion-mnist.yaml": "43 min on one shared thread (the diffusion grid)",
    "obliviate report runs/bench/diffusion-fashion-mnist": "needs the 43-minute diffusion grid above",
    # the README's deletion-request lines are docs/evidence.md's walkthrough, which runs there after making
    # its customers.csv
    "obliviate train --data customers.csv --target churn --subject customer_id --out runs/churn": "run in "
    "docs/evidence.md",
    "obliviate forget runs/churn ": "run in docs/evidence.md",
    "obliviate ledger verify runs/churn-1": "run in docs/evidence.md",
}
#: shell commands expected to fail until a known bug is fixed (strict: the test fails once it passes)
XFAIL_COMMANDS: dict[str, str] = {}
#: python blocks that are not run: (page, a line of the block) -> why
SKIP_PYTHON = {
    (
        "docs/language-models.md",
        "train(model, sc.train, steps=800, batch_size=32, lr=3e-3)",
    ): "trains the lm-demo's GPT-2 for 800 steps (~2 min), then unlearns it",
}


@dataclass
class Block:
    page: str  # relative to the repository root
    line: int  # line of the opening fence
    lang: str
    code: str


def blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if m:
            indent, lang, start, body = m.group(1), m.group(2), i, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i][len(indent) :])
                i += 1
            out.append(Block(path.relative_to(ROOT).as_posix(), start + 1, lang, "\n".join(body)))
        i += 1
    return out


ALL = [b for p in PAGES for b in blocks(p)]


def commands(block: Block) -> list[str]:
    """Shell commands of a block, ``\\``-continuations joined."""
    out, cur = [], ""
    for line in block.code.split("\n"):
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip() and not cur.strip().startswith("#"):
            out.append(cur.strip())
        cur = ""
    return out


def _reason(cmd: str, table: dict[str, str]) -> str | None:
    return next((why for prefix, why in table.items() if cmd.startswith(prefix)), None)


def _python_skip(block: Block) -> str | None:
    return next((why for (page, line), why in SKIP_PYTHON.items() if block.page == page and line in block.code), None)


def _env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MPLCONFIGDIR": str(tmp / ".mpl"),
        "HOME": str(tmp),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
    }


_FOLDERS: dict[str, Path] = {}


def _folder(page: str, kind: str, factory: pytest.TempPathFactory) -> Path:
    """One empty folder per page and kind, shared by that page's blocks in order."""
    key = f"{page}:{kind}"
    if key not in _FOLDERS:
        d = factory.mktemp(re.sub(r"\W", "_", key))
        (d / "benchmarks").symlink_to(ROOT / "benchmarks")
        (d / "docs").symlink_to(ROOT / "docs")
        _FOLDERS[key] = d
    return _FOLDERS[key]


SHELL = [(b, c) for b in ALL if b.lang in ("bash", "sh", "console") for c in commands(b)]
PY_PAGES = sorted({b.page for b in ALL if b.lang == "python"})


@pytest.mark.parametrize(
    "block,cmd", SHELL, ids=[f"{b.page}:{b.line}:{c.split('#')[0].strip()[:60]}" for b, c in SHELL]
)
def test_shell_command(block: Block, cmd: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    why = _reason(cmd, SKIP_COMMANDS)
    if why:
        pytest.skip(why)
    xfail = _reason(cmd, XFAIL_COMMANDS)
    cwd = _folder(block.page, "shell", tmp_path_factory)
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", cmd],
        check=False,
        cwd=cwd,
        env=_env(cwd),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if xfail and proc.returncode != 0:
        pytest.xfail(f"{xfail}: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, (
        f"{block.page}:{block.line}: `{cmd}` failed\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    if xfail:
        pytest.fail(f"`{cmd}` passes now: remove it from XFAIL_COMMANDS ({xfail})")


_DRIVER = textwrap.dedent("""
    import sys, json
    blocks = json.loads(sys.stdin.read())
    ns = {"__name__": "__main__"}
    for page, line, code in blocks:
        print(f"--- {page}:{line}", flush=True)
        try:
            exec(compile(code, f"{page}:{line}", "exec"), ns)
        except BaseException:
            print(f"FAILED in the block at {page}:{line}", file=sys.stderr)
            raise
""")


@pytest.mark.parametrize("page", PY_PAGES)
def test_python_blocks(page: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    import json

    todo, skipped = [], []
    for b in ALL:
        if b.page == page and b.lang == "python":
            why = _python_skip(b)
            (skipped if why else todo).append((b, why))
    if not todo:
        pytest.skip("; ".join(f"{b.page}:{b.line}: {why}" for b, why in skipped))
    cwd = _folder(page, "python", tmp_path_factory)
    payload = json.dumps([(b.page, b.line, b.code) for b, _ in todo])
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        check=False,
        input=payload,
        cwd=cwd,
        env=_env(cwd),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{page}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def test_skip_lists_name_existing_blocks() -> None:
    """A listed skip that matches nothing is stale: the docs changed, so the list must too."""
    cmds = [c for _, c in SHELL]
    for prefix in [*SKIP_COMMANDS, *XFAIL_COMMANDS]:
        assert any(c.startswith(prefix) for c in cmds), f"no command starts with {prefix!r} any more"
    for page, line in SKIP_PYTHON:
        assert any(b.page == page and line in b.code for b in ALL), f"no python block in {page} holds {line!r}"


def test_readme_is_short() -> None:
    n = len((ROOT / "README.md").read_text().split("\n"))
    assert n <= 200, f"README.md has {n} lines; move detail to docs/"
