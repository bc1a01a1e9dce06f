"""Per-node wall times of metasyn runs, from their run records (``metasyn.run_record``).

    .venv/bin/python benchmarks/node_times.py                     # every record in data/08_reporting/runs
    .venv/bin/python benchmarks/node_times.py path/to/record.json # one run

Prints each node's seconds in the newest run that ran it, longest first, with its share and the running
total, then the total per pipeline stage (the node name's namespace, e.g. ``metacog`` or ``comparison``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from metasyn.comparison.report import node_times
from metasyn.run_record import RUNS_DIRECTORY, latest_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", nargs="*", type=Path, help="run record files (default: every record)")
    arguments = parser.parse_args()
    records = [json.loads(path.read_text()) for path in arguments.records] or latest_records(RUNS_DIRECTORY)
    if not records:
        raise SystemExit(f"No run records in {RUNS_DIRECTORY}: run `kedro run` (or `make demo`) first.")
    table = node_times(records)
    table["cumulative"] = table["seconds"].cumsum()
    print(table.to_string(index=False, float_format=lambda value: f"{value:.2f}"))
    stages = table.assign(stage=table["node"].str.split(".").str[0]).groupby("stage")["seconds"].sum()
    print("\nPer namespace (seconds):")
    print(stages.sort_values(ascending=False).to_string(float_format=lambda value: f"{value:.1f}"))
    print(f"\nTotal: {table['seconds'].sum():.1f} s over {len(table)} nodes, {len(records)} run record(s).")


if __name__ == "__main__":
    main()
