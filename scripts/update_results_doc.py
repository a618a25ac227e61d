"""Copy the aggregated tables and figures of `liftpool reproduce` into docs/results.md.

Every ``<!-- BEGIN <budget>/<file> -->`` ... ``<!-- END -->`` block of the page is replaced by
``<runs>/<budget>/report/<file>`` (or "(not run)" when that file does not exist), and every
``<runs>/<budget>/report/results_<table>[_predictions].png`` is copied to
``docs/figures/results_<budget>_<table>[_predictions].png``.  The prose (verdicts) is not touched.

    python scripts/update_results_doc.py --runs /work/runs/reproduce [--doc docs/results.md]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from liftpool.io import atomic_write_bytes, atomic_write_text

BLOCK = re.compile(r"<!-- BEGIN (\S+) -->\n.*?<!-- END -->", flags=re.S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="folder holding one `liftpool reproduce --out` folder per budget")
    ap.add_argument("--doc", default=str(Path(__file__).resolve().parents[1] / "docs" / "results.md"))
    args = ap.parse_args()
    runs, doc = Path(args.runs), Path(args.doc)
    if not runs.is_dir():
        raise SystemExit(f"--runs {runs} is not a folder")

    def fill(m: re.Match[str]) -> str:
        key = m.group(1)
        budget, name = key.split("/", 1)
        f = runs / budget / "report" / name
        body = f.read_text() if f.exists() else "(not run)\n"
        body = "\n".join(line for line in body.splitlines() if not line.startswith("<!-- budget")) + "\n"
        return f"<!-- BEGIN {key} -->\n{body}<!-- END -->"

    atomic_write_text(doc, BLOCK.sub(fill, doc.read_text()))
    figs = doc.parent / "figures"
    for budget_dir in sorted(p for p in runs.iterdir() if (p / "report").is_dir()):
        for png in sorted((budget_dir / "report").glob("results_*.png")):
            dst = figs / f"results_{budget_dir.name}_{png.name[len('results_'):]}"
            atomic_write_bytes(dst, png.read_bytes())
            print(f"{png} -> {dst}")


if __name__ == "__main__":
    main()
