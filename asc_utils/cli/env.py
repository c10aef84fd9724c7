"""`asc check` (the environment) and `asc tutorial` (every notebook, headless)."""

from __future__ import annotations

import argparse
from pathlib import Path

from asc_utils import check, runner


def register(sub: argparse._SubParsersAction) -> None:
    """Add `check` and `tutorial`."""
    p = sub.add_parser("check", help="check dependencies, audio back end, accelerator and data directory")
    p.add_argument("--data-dir", default=None, help="data set folder (default: $ASC_DATA_DIR or data/tutorial)")
    p.set_defaults(func=run_check)

    p = sub.add_parser("tutorial", help="execute every notebook headless, in order, and write executed copies + HTML")
    p.add_argument("--out", default="outputs/tutorial", help="output folder for executed notebooks (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="data set folder passed to the notebooks as DATA_DIR")
    p.add_argument("--smoke", action="store_true", help="SMOKE=True: shrink every notebook to seconds")
    p.add_argument("--only", nargs="*", default=None, help="run only notebooks whose name contains one of these strings")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a notebook parameter (a Python literal); checked against the selected notebooks' "
                        "parameters cells before anything runs: the name must be defined there, the value must have the "
                        "type of its default")
    p.add_argument("--no-html", action="store_true", help="skip the HTML copies")
    p.set_defaults(func=run_tutorial)


def run_check(args: argparse.Namespace) -> int:
    """`asc check`: print the checks, exit 1 if any failed."""
    ok = check.run_checks(args.data_dir)
    print("All checks passed." if ok else "Some checks failed: see the [FAIL] lines above.")
    return 0 if ok else 1


def run_tutorial(args: argparse.Namespace) -> int:
    """`asc tutorial`: check the parameters, run the notebooks and print the summary; exit 1 if any failed."""
    params = runner.parse_params(args.param)
    if args.smoke:
        params["SMOKE"] = True
    if args.data_dir:
        params["DATA_DIR"] = str(Path(args.data_dir).resolve())
    if not runner.select_notebooks(args.only):
        names = ", ".join(p.name for p in runner.notebook_paths()) or "none"
        print(f"No notebook name contains any of {args.only}; the notebooks are: {names}. Nothing was run.")
        return 1
    # run_all checks every override against the selected notebooks' parameters cells before it runs anything
    results = runner.run_all(args.out, params, only=args.only, html=not args.no_html, report=lambda line: print(line, flush=True))
    table = runner.summary_table(results)
    print("\n" + table)
    out = Path(args.out)
    (out / "SUMMARY.txt").write_text(table + "\n", encoding="utf-8")
    print(f"\nExecuted notebooks and HTML copies are in {out}/")
    return 0 if all(r.ok for r in results) else 1
