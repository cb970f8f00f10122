"""Run the test suite one module per pytest process; print one closing `N passed, N failed` line.

Why not one process: the suite drives native DDS stacks (Fast DDS through
rclpy, CycloneDDS through unitree_sdk2py), rclpy contexts, a browser driver
and torch in the test process itself.  Two fresh-clone runs of the whole
suite in one process segfaulted at a module boundary (once at the 11th test,
once at the 516th), each module passing on its own; native state piling up
across ~60 modules is the common factor.  A process per module keeps each
module's native state its own, and a crash, should one happen, names its module.

A module that fails is run once more, only its failed tests, in a new process
(pytest's --last-failed from a cache of that module's run).  Sim-in-the-loop
tests run real processes in real time on shared 2-core machines; a test that
fails and then passes is reported by name as FLAKY in the closing lines (and
counts as passed), a test that fails twice fails the run.  After every module
the processes it left running (anything whose command line names this
checkout) are listed and killed: one left publishing on a DDS domain could
disturb a later module.

    python scripts/run_tests.py [tests/test_x.py ...] [PYTEST_ARGS...]      (make test passes -rs --timeout 300)

Test module paths among the arguments choose the modules (default: all of tests/test_*.py);
the other arguments go to every pytest run.

Exit status: 0 when every module passed; 1 otherwise (a module that
collects no test counts as a failure, as pytest's exit 5 does for a run).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")
LEFTOVER_GRACE_S = 2.0     # how long a process may take to exit after the pytest run that started it


FAILED_ID = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$")


def _with_failures_listed(argv: list[str]) -> list[str]:
    """argv with pytest's -r report chars plus f and E (the rerun reads the FAILED/ERROR lines);
    pytest keeps only the last -r option, so a caller's -rs is merged, not followed."""
    chars = "".join(a[2:] for a in argv if a.startswith("-r") and len(a) > 2)
    rest = [a for a in argv if not (a.startswith("-r") and len(a) > 2)]
    return rest + ["-r" + chars + "".join(c for c in "fE" if c not in chars)]


def _pytest(rel: Path, cache: str, argv: list[str], extra: list[str]) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", str(rel), "-q", "-p", "cacheprovider",
                           "-o", f"cache_dir={cache}", *_with_failures_listed(argv), *extra],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout
    print(out, end="" if out.endswith("\n") else "\n", flush=True)
    return proc.returncode, out


def _counts(out: str) -> dict[str, int]:
    summary = [ln for ln in out.splitlines() if COUNT.search(ln) and (" in " in ln or ln.startswith("="))]
    counts: dict[str, int] = {}
    for n, what in COUNT.findall(summary[-1] if summary else ""):
        key = "errors" if what.startswith("error") else what
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def _ours() -> dict[int, str]:
    """pid -> command line of every process whose command line names this checkout."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if str(REPO) in cmd:
            found[int(entry.name)] = cmd
    return found


def _kill_leftovers(before: dict[int, str], rel: Path) -> list[str]:
    # A helper that ends by itself once pytest has gone is not left running: multiprocessing's
    # resource tracker exits when its parent's pipe closes, a few ms after the parent (seen as
    # a "leftover" of test_data when looked at at once).  Anything still there after the grace is.
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while True:
        left = {pid: cmd for pid, cmd in _ours().items() if pid not in before}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return [f"{rel}: left running, killed: pid {pid} {cmd[:160]}" for pid, cmd in left.items()]


def main(argv: list[str]) -> int:
    all_modules = sorted((REPO / "tests").glob("test_*.py"))
    chosen = [(Path.cwd() / a).resolve() for a in argv if a.endswith(".py")]
    unknown = [str(p) for p in chosen if p not in all_modules]
    if unknown:
        print(f"run_tests: not a test module of {REPO / 'tests'}: {', '.join(unknown)}", file=sys.stderr)
        return 2
    modules = chosen or all_modules
    argv = [a for a in argv if not a.endswith(".py")]
    totals: dict[str, int] = {}
    bad: list[str] = []
    flaky: list[str] = []
    leftovers: list[str] = []
    t0 = time.monotonic()
    for i, module in enumerate(modules, 1):
        rel = module.relative_to(REPO)
        print(f"[{i}/{len(modules)}] {rel}", flush=True)
        before = _ours()
        with tempfile.TemporaryDirectory(prefix="surgbot-pytest-cache-") as cache:
            code, out = _pytest(rel, cache, argv, [])
            counts = _counts(out)
            leftovers += _kill_leftovers(before, rel)
            failed_ids = [m.group(1) for m in map(FAILED_ID.match, out.splitlines()) if m]
            if code == 1 and failed_ids:
                print(f"[{i}/{len(modules)}] {rel}: rerunning its {len(failed_ids)} failed test(s) once", flush=True)
                code, out = _pytest(rel, cache, argv, ["--last-failed", "--last-failed-no-failures", "none"])
                leftovers += _kill_leftovers(before, rel)
                again = _counts(out)
                if code == 0 and again.get("passed", 0) == len(failed_ids):
                    flaky += [f"{fid} (passed on rerun)" for fid in failed_ids]
                    counts["passed"] = counts.get("passed", 0) + counts.pop("failed", 0) + counts.pop("errors", 0)
                elif code == 0:
                    code = 1                              # the rerun ran something else: do not trust it
        for key, n in counts.items():
            totals[key] = totals.get(key, 0) + n
        if code == 5 and "deselected" in out:
            continue                                   # every test filtered out by -m/-k: not a failure
        if code != 0:
            reason = "no tests collected" if code == 5 else f"exit {code}"
            if code < 0:
                reason = f"killed by signal {-code}"
            bad.append(f"{rel} ({reason})")
    minutes = (time.monotonic() - t0) / 60
    for line in leftovers:
        print(line, flush=True)
    for line in flaky:
        print(f"FLAKY: {line}", flush=True)
    if bad:
        print(f"modules that did not pass: {', '.join(bad)}", flush=True)
    print(f"{len(modules)} modules in {minutes:.1f} min; errors {totals.get('errors', 0)}, "
          f"deselected {totals.get('deselected', 0)}, flaky {len(flaky)}, processes left running {len(leftovers)}",
          flush=True)
    failed = totals.get("failed", 0) + totals.get("errors", 0)
    skipped = f", {totals['skipped']} skipped" if totals.get("skipped") else ""
    print(f"{totals.get('passed', 0)} passed, {failed} failed{skipped}", flush=True)   # the closing line
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
