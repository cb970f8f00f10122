"""`surgbot results {list,run,status,report}`: the learning-results cells (issue 18) and docs/results.md.

    surgbot results list [--section S]           cells, their state, their exact commands (--commands)
    surgbot results run --cell NAME [--cell ...] [--background]   run (or resume) cells one after another
    surgbot results status                       what is running, what finished, the last log line
    surgbot results report                       regenerate docs/results.md + plots from docs/results/*.json

`run` regenerates the page after each cell.  `--background` starts the same
command detached (niceness 10, one thread, output in out/results/logs/) and
returns; a cell already running is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from surgbot.errors import CliError
from surgbot.processes import lower_priority, pid_alive

NICENESS = 10


def _lower_priority() -> None:
    """In the detached child (a session of its own): niceness 10, also for its session's group, so
    a 'nice' training does not still take half of a 2-core machine from the tests and the stack
    beside it (processes.AUTOGROUP)."""
    lower_priority(os.getpid(), NICENESS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from surgbot.policies.results.cells import SECTIONS
    sub = parser.add_subparsers(dest="results_command", metavar="{list,run,status,report}")
    sub.required = True
    ls = sub.add_parser("list", help="every cell, its state and (with --commands) its commands")
    ls.add_argument("--section", help=" | ".join(SECTIONS))
    ls.add_argument("--commands", action="store_true", help="print each cell's exact commands")
    run = sub.add_parser("run", help="run or resume cells (one at a time), then regenerate the page")
    run.add_argument("--cell", action="append", required=True, metavar="NAME", help="cell name (repeat)")
    run.add_argument("--background", action="store_true", help="detach (nice, log in out/results/logs)")
    run.add_argument("--keep-going", action="store_true", help="after a failed or blocked cell, run the next")
    sub.add_parser("status", help="running / finished / not run, with the last log line")
    sub.add_parser("report", help="regenerate docs/results.md and its plots from the JSON")
    parser.add_argument("--root", type=Path, default=Path("."), help=argparse.SUPPRESS)


def _pid_alive(pid_file: Path) -> int | None:
    """The pid written in `pid_file` if that process is alive, else None."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def _check_names(names: list[str]) -> None:
    from surgbot.policies.results.cells import CELLS
    unknown = [n for n in names if n not in CELLS]
    if unknown:
        raise CliError(f"unknown cell(s) {', '.join(unknown)} (see `surgbot results list`)")


def cmd_list(args) -> int:
    from surgbot.policies.results import runner
    from surgbot.policies.results.cells import CELLS, SECTIONS
    from surgbot.policies.results.reading import stale_cells
    if args.section and args.section not in SECTIONS:
        raise CliError(f"unknown section {args.section!r} (choose from {', '.join(SECTIONS)})")
    evaluator = "harness" if runner.harness_installed() else "interim"
    for name, cell in CELLS.items():
        if args.section and cell.section != args.section:
            continue
        path = runner.json_path(args.root, name)
        done = path.is_file()
        running = _pid_alive(runner.pid_path(args.root, name))
        state = "running" if running else ("done" if done else "not run")
        if done and not running and stale_cells({name: json.loads(path.read_text())}):
            state = "done (by older commands: rerun)"
        print(f"{name:34s} {cell.section:10s} {state}")
        if args.commands:
            for c in cell.commands(evaluator):
                print("    " + " ".join(c))
    return 0


def cmd_run(args) -> int:
    from surgbot.policies.results import report, runner
    from surgbot.policies.results.cells import CELLS
    _check_names(args.cell)
    for name in args.cell:
        pid = _pid_alive(runner.pid_path(args.root, name))
        if pid and pid != os.getpid():
            raise CliError(f"cell {name} is already running (pid {pid})")
    if args.background:
        log = runner.log_path(args.root, args.cell[0])
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "surgbot.cli", "results", "run"]
        for n in args.cell:
            argv += ["--cell", n]
        argv += ["--keep-going"] if args.keep_going else []
        with open(log.with_suffix(".bg.log"), "a") as out:
            proc = subprocess.Popen(argv, cwd=args.root, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_lower_priority,
                                    env={**os.environ, **runner.CHILD_ENV})
        for n in args.cell:
            runner.pid_path(args.root, n).parent.mkdir(parents=True, exist_ok=True)
            runner.pid_path(args.root, n).write_text(str(proc.pid))
        print(f"started pid {proc.pid}: {', '.join(args.cell)}; progress: surgbot results status "
              f"(log {log.with_suffix('.bg.log')})")
        return 0
    import torch
    torch.set_num_threads(1)
    failed = []
    for name in args.cell:
        pid_file = runner.pid_path(args.root, name)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(str(os.getpid()))
        try:
            runner.CellRunner(CELLS[name], args.root, echo=lambda s: print(s, flush=True)).run()
        except runner.CellError as exc:
            print(f"{name}: {exc}", flush=True)
            failed.append(name)
            if not args.keep_going:
                break
        finally:
            pid_file.unlink(missing_ok=True)
            report.generate(args.root)
    if failed:
        raise CliError(f"not finished: {', '.join(failed)} (see out/results/logs/)")
    return 0


def cmd_status(args) -> int:
    from surgbot.policies.results import runner
    from surgbot.policies.results.cells import CELLS
    for name in CELLS:
        jf, log = runner.json_path(args.root, name), runner.log_path(args.root, name)
        pid = _pid_alive(runner.pid_path(args.root, name))
        if jf.is_file():
            r = json.loads(jf.read_text())
            print(f"{name:34s} done     {r['successes']}/{r['episodes']} ({r['evaluator']})")
        elif pid or log.is_file():
            last = log.read_text().strip().splitlines()[-1] if log.is_file() and log.stat().st_size else ""
            print(f"{name:34s} {'running' if pid else 'stopped'}  {last[-110:]}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.results_command == "list":
        return cmd_list(args)
    if args.results_command == "run":
        return cmd_run(args)
    if args.results_command == "status":
        return cmd_status(args)
    if args.results_command == "report":
        from surgbot.policies.results.report import generate
        print(json.dumps(generate(args.root)))
        return 0
    raise CliError(f"unknown results command {args.results_command}")
