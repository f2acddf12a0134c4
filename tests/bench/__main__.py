"""``python -m tests.bench [--quick] [--only NAME]``: run the benchmarks, print a table,
write bench-results.json. Figures are ratios against a baseline measured in the same run."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench import (
    auction,
    broker_growth,
    collector,
    delivery,
    event_loop,
    framework,
    isolation,
    mapping,
    parked,
    release,
    soak,
)

BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "mapping": mapping.run,
    "delivery": delivery.run,
    "isolation": isolation.run,
    "auction": auction.run,
    "parked": parked.run,
    "release": release.run,
    "framework": framework.run,
    "event_loop": event_loop.run,
    "gc": collector.run,
    "soak": soak.run,
    "soak_two_workers": soak.run_two_workers,
    "broker_growth": broker_growth.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--output", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args(argv)

    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
    }
    for name in args.only or BENCHMARKS:
        print(f"running {name} ...", file=sys.stderr)
        results[name] = BENCHMARKS[name](args.quick)
        _print_table(name, results[name])
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {args.output}", file=sys.stderr)
    return 0


def _print_table(name: str, figures: dict[str, Any]) -> None:
    width = max(len(k) for k in figures)
    print(f"\n{name}")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
