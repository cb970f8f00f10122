"""Run the test suite one module per pytest process; print one closing `N passed, N failed` line.

Why not one process: the suite drives native DDS stacks (Fast DDS through
rclpy, CycloneDDS through unitree_sdk2py), rclpy contexts, a browser driver
and torch in the test process itself.  Two fresh-clone runs of the whole
suite in one process segfaulted at a module boundary (once at the 11th test,
once at the 516th), each module passing on its own; native state piling up
across ~60 modules is the common factor.  A process per module keeps each
module's native state its own, and a crash, should one happen, names its module.

    python scripts/run_tests.py [PYTEST_ARGS...]      (make test passes -rs --timeout 300)

Exit status: 0 when every module passed; 1 otherwise (a module that
collects no test counts as a failure, as pytest's exit 5 does for a run).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")


def main(argv: list[str]) -> int:
    modules = sorted((REPO / "tests").glob("test_*.py"))
    totals: dict[str, int] = {}
    bad: list[str] = []
    t0 = time.monotonic()
    for i, module in enumerate(modules, 1):
        rel = module.relative_to(REPO)
        print(f"[{i}/{len(modules)}] {rel}", flush=True)
        proc = subprocess.run([sys.executable, "-m", "pytest", str(rel), "-q", "-p", "no:cacheprovider", *argv],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = proc.stdout
        print(out, end="" if out.endswith("\n") else "\n", flush=True)
        summary = [ln for ln in out.splitlines() if COUNT.search(ln) and (" in " in ln or ln.startswith("="))]
        for n, what in COUNT.findall(summary[-1] if summary else ""):
            key = "errors" if what.startswith("error") else what
            totals[key] = totals.get(key, 0) + int(n)
        if proc.returncode == 5 and "deselected" in out:
            continue                                   # every test filtered out by -m/-k: not a failure
        if proc.returncode != 0:
            reason = "no tests collected" if proc.returncode == 5 else f"exit {proc.returncode}"
            if proc.returncode < 0:
                reason = f"killed by signal {-proc.returncode}"
            bad.append(f"{rel} ({reason})")
    minutes = (time.monotonic() - t0) / 60
    if bad:
        print(f"modules that did not pass: {', '.join(bad)}", flush=True)
    print(f"{len(modules)} modules in {minutes:.1f} min; errors {totals.get('errors', 0)}, "
          f"deselected {totals.get('deselected', 0)}", flush=True)
    failed = totals.get("failed", 0) + totals.get("errors", 0)
    skipped = f", {totals['skipped']} skipped" if totals.get("skipped") else ""
    print(f"{totals.get('passed', 0)} passed, {failed} failed{skipped}", flush=True)   # the closing line
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
