"""Another revision of this project, served beside the working tree (``make bench BASELINE=…``).

``baseline_checkout(rev)`` checks the revision out with ``git worktree add`` into a temporary
directory and gives it its own virtualenv, made by that revision's own ``make venv`` from its
own ``requirements.txt``. The checkout is removed afterwards; the virtualenv is kept under
``var/bench-baseline/<commit>/`` (``var/`` is git-ignored), so a rerun against the same commit
does not install anything again. Delete that directory to reclaim the space.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "bench-baseline"
# make's own variables: a nested make must not inherit the outer one's flags or jobserver.
MAKE_VARIABLES = frozenset({"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VENV"})


@dataclass(frozen=True)
class Checkout:
    """A revision checked out at ``root``, with its virtualenv at ``venv``."""

    rev: str  # as the caller named it
    commit: str  # the full commit id
    subject: str  # its commit message's first line
    root: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def make_args(self) -> tuple[str, ...]:
        """What ``make -C root <target>`` needs to use this checkout's virtualenv."""
        return (f"VENV={self.venv}",)

    @property
    def short(self) -> str:
        return self.commit[:10]


def git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench: git {' '.join(args)} failed:\n{done.stderr.strip()}")
    return done.stdout.strip()


def describe_working_tree() -> str:
    """This tree's commit, and whether tracked files differ from it."""
    commit = git("rev-parse", "--short=10", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}{' with uncommitted changes' if dirty else ''}"


def make_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in MAKE_VARIABLES}


@contextlib.contextmanager
def baseline_checkout(rev: str) -> Iterator[Checkout]:
    """``rev`` checked out in a temporary worktree with its virtualenv ready; removed on exit."""
    commit = git("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")
    subject = git("log", "-1", "--format=%s", commit)
    with tempfile.TemporaryDirectory(prefix="alwrity-baseline-") as tmp:
        root = Path(tmp) / "checkout"
        git("worktree", "add", "--detach", "--quiet", str(root), commit)
        try:
            checkout = Checkout(rev, commit, subject, root, CACHE / commit / "venv")
            prepare_venv(checkout)
            yield checkout
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(root)],
                cwd=ROOT,
                capture_output=True,
            )
            subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)


def prepare_venv(checkout: Checkout) -> None:
    """The revision's own ``make venv`` into the cached virtualenv.

    The fresh checkout's ``requirements.txt`` is newer than any earlier install, so make would
    reinstall every time: when the cache was made from the same requirements (their hash is
    kept beside it), its install stamp is touched first and ``make venv`` has nothing to do.
    """
    wanted = hashlib.sha256((checkout.root / "requirements.txt").read_bytes()).hexdigest()
    marker = checkout.venv.parent / "requirements.sha256"
    stamp = checkout.venv / ".requirements-installed"  # the Makefile's STAMP
    if checkout.python.exists() and marker.exists() and marker.read_text().strip() == wanted:
        stamp.touch()
    else:
        print(
            f"bench: installing {checkout.short}'s requirements.txt into {checkout.venv} "
            "(once per commit; it can take a few minutes)",
            flush=True,
        )
    checkout.venv.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["make", "-s", "-C", str(checkout.root), "venv", *checkout.make_args],
        env=make_env(),
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(
            f"bench: `make venv` of {checkout.rev} failed:\n{(done.stdout + done.stderr)[-3000:]}"
        )
    marker.write_text(wanted + "\n")
