"""Copy the aggregated tables and figures of `liftpool reproduce` into docs/results.md and the README.

Every ``<!-- BEGIN <budget>/<file> -->`` ... ``<!-- END -->`` block of each page whose budget folder
``<runs>/<budget>`` exists is replaced by ``<runs>/<budget>/report/<file>`` (or "(not run)" when that
file does not exist; image links in it are made relative to the page), and every
``<runs>/<budget>/report/results_<table>[_predictions].png`` is copied to
``docs/figures/results_<budget>_<table>[_predictions].png`` (for a page that links such figures).
The prose around the blocks is not touched.

    python scripts/update_results_doc.py --runs <runs dir> [--doc docs/results.md --doc README.md]
    python scripts/update_results_doc.py --runs results      # the xl study committed under results/xl

Without ``--doc`` both docs/results.md and README.md are filled (the README holds the xl study's
short table, ``xl/readme_xl.md``).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from liftpool.io import atomic_write_bytes, atomic_write_text

BLOCK = re.compile(r"<!-- BEGIN (\S+) -->\n.*?<!-- END -->", flags=re.S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="folder holding one `liftpool reproduce --out` folder per budget")
    ap.add_argument("--doc", action="append", help="a page to fill (repeatable; default docs/results.md and README.md)")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    runs = Path(args.runs)
    docs = [Path(d) for d in args.doc] if args.doc else [root / "docs" / "results.md", root / "README.md"]
    if not runs.is_dir():
        raise SystemExit(f"--runs {runs} is not a folder")
    for doc in docs:
        if not doc.is_file():
            raise SystemExit(f"--doc {doc} is not a file")
        fill_page(runs, doc)


def fill_page(runs: Path, doc: Path) -> None:
    """Replace the page's blocks by the reports under ``runs``; a page that links ``figures/results_*``
    also gets the result figures copied into the ``figures`` folder beside it."""

    def fill(m: re.Match[str]) -> str:
        key = m.group(1)
        budget, name = key.split("/", 1)
        if not (runs / budget).is_dir():
            return m.group(0)
        f = runs / budget / "report" / name
        body = f.read_text() if f.exists() else "(not run)\n"
        rel = os.path.relpath(f.parent.resolve(), doc.parent.resolve())
        body = re.sub(r"\]\(([\w.-]+\.png)\)", lambda g: f"]({rel}/{g.group(1)})", body)
        body = "\n".join(line for line in body.splitlines() if not line.startswith("<!-- budget")) + "\n"
        return f"<!-- BEGIN {key} -->\n{body}<!-- END -->"

    text = BLOCK.sub(fill, doc.read_text())
    atomic_write_text(doc, text)
    if "figures/results_" not in text:  # a page that shows none of the copied figures (the README)
        return
    figs = doc.parent / "figures"
    for budget_dir in sorted(p for p in runs.iterdir() if (p / "report").is_dir()):
        for png in sorted((budget_dir / "report").glob("results_*.png")):
            dst = figs / f"results_{budget_dir.name}_{png.name[len('results_'):]}"
            atomic_write_bytes(dst, png.read_bytes())
            print(f"{png} -> {dst}")


if __name__ == "__main__":
    main()
