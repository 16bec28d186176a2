"""`python -m mnist_lab.report <sweep folder|latest>`: a sweep's table, sorted by test accuracy,
written as `summary.md` and `summary.csv` in the sweep folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_lab.cli.run_record import RECORD, describe, differing
from mnist_lab.errors import UserError
from mnist_lab.sweeps.summary import find_latest, write_summary


def main(argv: list[str] | None = None) -> int:
    """`python -m mnist_lab.report <sweep folder|latest>`: print and write the sweep's summary."""
    parser = argparse.ArgumentParser(prog="python -m mnist_lab.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="a multirun folder (outputs/multirun/<date>/<time>) or latest")
    parser.add_argument("--outputs", default="outputs", type=Path, help="where to look for latest (default: outputs)")
    args = parser.parse_args(argv)
    try:
        sweep = find_latest(args.outputs) if args.sweep == "latest" else Path(args.sweep)
        if not sweep.is_dir():
            raise UserError(f"{sweep} is not a folder; give the folder of a multirun, or latest")
        print(write_summary(sweep))
        differences = describe(differing(sorted(p.parent for p in sweep.glob(f"*/{RECORD}"))))
        if differences:
            print(differences)
        print(f"wrote {sweep / 'summary.md'} and {sweep / 'summary.csv'}")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
