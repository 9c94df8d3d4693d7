"""Two versions of the portal side by side: the same HTTP scenarios on both, measured alternately.

On a shared or noisy machine, figures from runs minutes apart differ more than a change does (on
2026-11-23 `/healthz` alone ranged from 1,455 to 2,938 requests/s between rounds: docs/benchmarks.md).
This serves the old and the new checkout at once, each with gunicorn and its own scratch database
as bench.http_load sets them up, and measures a scenario on one, then the other, in ABBA order, for
many short rounds: every ratio compares figures taken a second apart.

    .venv/bin/python -m bench.compare OLD [NEW] [--databases sqlite] [--scenarios download@16]
                                      [--rounds 10] [--seconds 1]

OLD and NEW are git revisions (NEW defaults to the working tree as it is). A revision is checked out
in a temporary worktree, removed after; both use this virtualenv. Scenarios are bench.http_load's
(healthz@16, JSON 404@16, download@16, download@1, download@64, one user@16, key@16, ...). Prints,
per scenario, each side's requests/s (min / median / max) and new / old per round with its median.
A comparison has no target: the exit status is 0 unless a side fails to start.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench._setup import ROOT, database_kinds, gunicorn_serving, machine, measure, postgres_url_default, spread
from bench.http_load import DEVICES, MEASURES, SEED, USERS


@contextmanager
def checkout(revision: str | None) -> Iterator[Path]:
    """The working tree for None, else a temporary detached worktree at `revision`."""
    if revision is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as folder:
        tree = Path(folder) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), revision], cwd=ROOT, check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


def label(revision: str | None) -> str:
    return revision or "working tree"


def compare(kind: str, args) -> None:
    measures = {m.name: m for m in MEASURES}
    unknown = [name for name in args.scenarios if name not in measures]
    if unknown:
        raise SystemExit(f"unknown scenario {', '.join(unknown)}: choose among {', '.join(measures)}")
    chosen = [measures[name] for name in args.scenarios]
    sides = (args.old, args.new)
    print(
        f"\n== {kind}: {label(args.old)} (old) against {label(args.new)} (new), {args.rounds} rounds of {args.seconds:g} s"
    )
    with ExitStack() as stack:
        seed = SEED.format(users=USERS, devices=DEVICES)
        servers = []
        for revision in sides:
            tree = stack.enter_context(checkout(revision))
            servers.append(stack.enter_context(gunicorn_serving(kind, args.postgres_url, seed, root=tree)))
        loads = [{m.name: m.load(server) for m in chosen} for server in servers]
        for server, load in zip(servers, loads, strict=True):
            for m in chosen:  # warm every worker thread, connection and cache
                measure(server, load[m.name], 0.5)
        rates: list[dict[str, list[float]]] = [{m.name: [] for m in chosen} for _ in sides]
        for n in range(args.rounds):
            order = (0, 1) if n % 2 == 0 else (1, 0)
            for m in chosen:
                for side in order:
                    rate, _ = measure(servers[side], loads[side][m.name], args.seconds, warm_up=0.2)
                    rates[side][m.name].append(rate)
        print(f"  {'requests/s (min / median / max)':30} {'old':>22} {'new':>22}   new / old per round")
        for m in chosen:
            old, new = rates[0][m.name], rates[1][m.name]
            ratios = [b / a for a, b in zip(old, new, strict=True)]
            print(
                f"  {m.name:30} {spread(old, 0):>22} {spread(new, 0):>22}   "
                f"{' '.join(f'{r:.2f}' for r in ratios)}  median {statistics.median(ratios):.2f}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the git revision to compare against")
    parser.add_argument("new", nargs="?", default=None, help="a git revision (default: the working tree)")
    parser.add_argument("--databases", default="sqlite")
    parser.add_argument("--postgres-url", default=postgres_url_default())
    parser.add_argument("--scenarios", default="download@16", type=lambda v: [s.strip() for s in v.split(",")])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    print(machine())
    for kind in database_kinds(args.databases):
        compare(kind, args)


if __name__ == "__main__":
    main()
