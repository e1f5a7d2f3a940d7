"""Run every benchmark in turn: each ``bench/<name>.py`` that defines ``main()``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main() -> None:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))
    only = set(sys.argv[1:])
    sys.argv = sys.argv[:1]  # each module parses its own options: run them with their defaults
    failed = []
    for name in names:
        if only and name not in only:
            continue
        module = importlib.import_module(f"bench.{name}")
        entry = getattr(module, "main", None)
        if not callable(entry):
            continue
        print(f"\n=== bench.{name} ===", flush=True)
        start = time.perf_counter()
        try:
            entry()
        except Exception as exc:  # one broken bench must not hide the others' figures
            failed.append(name)
            print(f"bench.{name} failed: {exc!r}", flush=True)
        print(f"=== bench.{name}: {time.perf_counter() - start:.0f} s ===", flush=True)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
