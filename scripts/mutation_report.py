"""Per-module kill rate of the last mutmut run (`make mutation`, docs/testing.md).

Reads `mutmut results --all true`, one ``<module>.<function>__mutmut_<n>: <status>`` line per mutant, and prints
for each mutated module how many mutants were checked and killed. A timeout counts as a kill (the tests did not
pass); "no tests" and "suspicious" count as survivors. Mutants not checked yet (a run cut short, or restricted to
some modules) are counted apart and left out of the rate, so a partial run reports what it measured.

    python scripts/mutation_report.py             # runs `mutmut results --all true` in the project root
    python scripts/mutation_report.py results.txt # or reads saved output of that command
    python scripts/mutation_report.py --survivors # and lists the mutants that survived, for `mutmut show`
    python scripts/mutation_report.py --names     # only the survivors' names: rerun them after adding tests,
        make mutation MUTANTS="$(python scripts/mutation_report.py --names)"
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

LINE = re.compile(r"^\s*(?P<name>\S+__mutmut_\d+):\s*(?P<status>.+?)\s*$")
KILLED = {"killed", "timeout", "caught by type check"}
UNCHECKED = {"not checked", "skipped", "check was interrupted by user"}


def module_of(mutant: str) -> str:
    """``metasyn.lm.answers.x_parse__mutmut_3`` and ``metasyn.a.xǁClassǁmethod__mutmut_1`` -> their module."""
    return mutant.rsplit("__mutmut_", 1)[0].rpartition(".")[0]


def parse(lines: list[str]) -> dict[str, str]:
    """Mutant name -> status, from the lines of `mutmut results --all true`."""
    return {match["name"]: match["status"] for line in lines if (match := LINE.match(line))}


def tally(statuses: dict[str, str]) -> dict[str, Counter]:
    """Per module: total, killed, survived and unchecked mutants."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for mutant, status in statuses.items():
        count = counts[module_of(mutant)]
        count["total"] += 1
        if status in UNCHECKED:
            count["unchecked"] += 1
        elif status in KILLED:
            count["killed"] += 1
        else:
            count["survived"] += 1
    return dict(counts)


def table(counts: dict[str, Counter]) -> str:
    """One row per module and an ``all`` row: killed / checked and the kill rate in percent."""
    rows = [("module", "total", "checked", "killed", "survived", "unchecked", "kill rate")]
    everything: Counter = Counter()
    for module in sorted(counts):
        everything.update(counts[module])
    for module, count in [*sorted(counts.items()), ("all", everything)]:
        checked = count["killed"] + count["survived"]
        rate = f"{100 * count['killed'] / checked:.1f}%" if checked else "-"
        rows.append((module, *(str(count[k]) for k in ("total",)), str(checked), str(count["killed"]),
                     str(count["survived"]), str(count["unchecked"]), rate))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def mutmut_results() -> list[str]:
    """The output of `mutmut results --all true`, from the mutmut next to this Python or on PATH."""
    mutmut = Path(sys.executable).with_name("mutmut")
    command = [str(mutmut) if mutmut.exists() else shutil.which("mutmut") or "mutmut", "results", "--all", "true"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, help="saved output of `mutmut results --all true`")
    parser.add_argument("--survivors", action="store_true", help="also list every mutant that was not killed")
    parser.add_argument("--names", action="store_true", help="print only the names of the mutants not killed")
    args = parser.parse_args(argv)
    lines = args.results.read_text().splitlines() if args.results else mutmut_results()
    statuses = parse(lines)
    if not statuses:
        print("No mutants found: run `make mutation` (or `mutmut run`) first.", file=sys.stderr)
        return 1
    survivors = [(m, s) for m, s in statuses.items() if s not in KILLED | UNCHECKED]
    if args.names:
        print(" ".join(sorted(mutant for mutant, _ in survivors)))
        return 0
    print(table(tally(statuses)))
    if args.survivors:
        print(f"\n{len(survivors)} mutants not killed (see each with `mutmut show NAME`):")
        for mutant, status in sorted(survivors):
            print(f"  {mutant}: {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
