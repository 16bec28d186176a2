"""`python -m mnist_lab.report <sweep folder|latest>`: a sweep's seed groups with their statistics,
its figures and its jobs, written beside it as summary.md, summary.csv, groups.csv and report.html.
`python -m mnist_lab.report <run> <run>`: two runs side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_lab.cli.run_record import RECORD, describe, differing
from mnist_lab.errors import UserError

DESCRIPTION = (
    "A sweep's seed groups (mean, spread, 95% intervals, each compared with the best), figures and jobs, "
    "written beside it as summary.md, groups.csv and report.html; or two runs side by side."
)


def main(argv: list[str] | None = None) -> int:
    """`python -m mnist_lab.report <sweep folder|latest> [--over KEY]` or `<run> <run>`."""
    parser = argparse.ArgumentParser(prog="python -m mnist_lab.report", description=DESCRIPTION)
    parser.add_argument(
        "folders",
        nargs="+",
        metavar="folder",
        help="a multirun folder (outputs/multirun/<date>/<time>), latest, or two run folders",
    )
    parser.add_argument("--over", default="seed", help="the key a group averages over (default: seed)")
    parser.add_argument("--outputs", default="outputs", type=Path, help="where to look for latest (default: outputs)")
    parser.add_argument("--out", type=Path, help="where two runs' figure goes (default: <outputs>/compare)")
    args = parser.parse_args(argv)
    try:
        if len(args.folders) == 2:
            from mnist_lab.sweeps.compare import compare, read_run

            runs = [read_run(Path(f)) for f in args.folders]
            print(compare(*runs, args.out or args.outputs / "compare"))
            differences = describe(differing([Path(f) for f in args.folders]))
            if differences:
                print(differences)
            return 0
        if len(args.folders) > 2:
            raise UserError("give one sweep folder (or latest), or two run folders to compare")
        from mnist_lab.sweeps.summary import find_latest, write_summary

        sweep = find_latest(args.outputs) if args.folders[0] == "latest" else Path(args.folders[0])
        if not sweep.is_dir():
            raise UserError(f"{sweep} is not a folder; give the folder of a multirun, or latest")
        if (sweep / ".hydra").is_dir() and not any(sweep.glob("*/.hydra/overrides.yaml")):
            raise UserError(
                f"{sweep} is a run, not a sweep; give a sweep folder, or two runs to compare them: "
                f"python -m mnist_lab.report {sweep} <other run>"
            )
        print(write_summary(sweep, over=args.over))
        differences = describe(differing(sorted(p.parent for p in sweep.glob(f"*/{RECORD}"))))
        if differences:
            print(differences)
        print(f"wrote {sweep / 'summary.md'}, summary.csv, groups.csv and report.html")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
