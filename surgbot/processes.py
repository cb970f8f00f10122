"""Child processes that cannot outlive the process that started them, and a guard that keeps
our processes out of the real-time scheduling classes (`forbid_realtime_scheduling`).

Tests and benchmarks start the twin, the bridge and nodes as subprocesses.
If the parent dies hard (a segfault in a DDS listener, a kill -9), orphans
would keep publishing on the same DDS domains and load the machine; the
kernel's parent-death signal ends them instead.  Each child also gets its own
process group so `stop()` reaches its helpers too.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import subprocess
import sys
from typing import NoReturn

_PR_SET_PDEATHSIG = 1


def _load_prctl():
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None     # not Linux: the caller's cleanup still stops its children


# Loaded here, in the parent: the child, between fork and exec, must not dlopen.  A fork copies
# the dynamic loader's lock as it is; when another thread held it at that moment (DDS threads
# unwinding, a library loading), the child's dlopen waited on it forever (seen: the fault suite's
# restart of the scripted operator hung for 15 min in `Popen`, the child on a futex).
_PRCTL = _load_prctl()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # SIGINT is how `stop()` asks a child to shut down cleanly; a parent started in the
    # background by a non-interactive shell (nohup make test &) has it ignored, and an ignored
    # disposition survives exec: Python would then never raise KeyboardInterrupt in the child.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (another user's process counts as alive: not ours to judge)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(args: list[str], **popen_kwargs) -> subprocess.Popen:
    """`subprocess.Popen` in a new process group, SIGTERMed when this process dies."""
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent, **popen_kwargs)


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10.0) -> int | None:
    """Signal the child's process group, wait, then SIGKILL what is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    return proc.returncode


# With autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled` = 1: most desktop and cloud
# kernels, this machine) the CPU is first shared between sessions, equally, and a process's nice
# value only orders it among the processes of its own session (sched(7)).  Every node `start()`s
# is a session of its own, so its nice alone did nothing against the other nodes; the session's
# group has a nice value of its own (`/proc/PID/autogroup`) that does.
AUTOGROUP = "/proc/{pid}/autogroup"
NICE_MIN, NICE_MAX = -20, 19


def autogroup_nice(pid: int) -> int | None:
    """The nice value of `pid`'s session group, or None where it has none: a kernel without
    autogroup, or a process still in the root group (one whose session began before autogroup
    did, e.g. a container's PID 1 and everything it started without setsid): the kernel shows
    that file empty, and the group's CPU share is the whole machine's."""
    try:
        with open(AUTOGROUP.format(pid=pid)) as group:
            words = group.read().split()        # "/autogroup-3426 nice 0"
    except OSError:
        return None
    return int(words[-1]) if words else None


def lower_priority(pid: int, increment: int) -> str:
    """Nice process `pid` by `increment` and, when it leads a session of its own, that session's
    scheduling group to the same value.  Returns what could not be done ("" when all was)."""
    problems = []
    try:
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, pid) + increment)
    except OSError as exc:              # gone already, or not permitted
        problems.append(f"nice: {exc}")
    why = _set_group_nice(pid, max(NICE_MIN, min(NICE_MAX, increment)))   # against the untouched groups (0)
    if why not in (None, NOT_SESSION_LEADER, NO_AUTOGROUP):   # without a group of its own its nice alone applies
        problems.append(f"autogroup: {why}")
    return "; ".join(problems)


NOT_SESSION_LEADER = "not a session leader"
NO_AUTOGROUP = "a kernel without autogroup"


def _set_group_nice(pid: int, nice: int) -> str | None:
    """`pid`'s session scheduling group at `nice`, when `pid` leads a session of its own (a session
    others run in, the user's terminal, is never regrouped).  None when done, else why not."""
    try:
        if os.getsid(pid) != pid:
            return NOT_SESSION_LEADER
    except OSError:                     # gone already: no session of its own to regroup
        return NOT_SESSION_LEADER
    try:
        with open(AUTOGROUP.format(pid=pid), "w") as group:
            group.write(str(nice))
    except FileNotFoundError:
        return NO_AUTOGROUP
    except OSError as exc:
        return str(exc)
    return None


def exit_skipping_finalisation(status: int) -> NoReturn:
    """Flush stdout/stderr and end this process with `status` without interpreter finalisation.

    For processes whose work is done but that hold native threads not safe to
    finalise: DDS listener threads of cyclonedds/unitree_sdk2py (their Close()
    only drops the Python object), rclpy contexts, torch/ffmpeg pools.  CI saw
    "Segmentation fault" after every test had passed: the interpreter tearing
    those down at exit.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


# ------------------------------------------------------------------ real-time scheduling
# SVT-AV1 (the AV1 encoder behind LeRobot's dataset videos) switches the thread that opens an
# encoder to SCHED_FIFO priority 99 whenever it is allowed to (root, CAP_SYS_NICE, or an
# RLIMIT_RTPRIO as ROS real-time setups grant), and the encoder's worker threads inherit it.
# Measured on the 2-core machine: `surgbot data record` ran its main thread at FIFO 99 using
# 73 % of a core; every SCHED_OTHER process on that core waited behind it (the G1 bridge saw
# rt/lowstate 187 ms old; the safety supervisor faulted at every engage in `surgbot demo`).
_CAP_SYS_NICE = 23
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_LOWER = 47, 4
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _drop_cap_sys_nice(libc) -> None:
    """Take CAP_SYS_NICE out of this thread's bounding, ambient, effective, permitted and
    inheritable sets (a no-op where it is not held); threads and children started afterwards
    inherit the result, and exec cannot give it back (bounding set)."""
    libc.prctl(_PR_CAPBSET_DROP, _CAP_SYS_NICE, 0, 0, 0)           # fails harmlessly without CAP_SETPCAP
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_LOWER, _CAP_SYS_NICE, 0, 0)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return
    mask = ~(1 << _CAP_SYS_NICE) & 0xFFFFFFFF
    data[0].effective &= mask
    data[0].permitted &= mask
    data[0].inheritable &= mask
    libc.capset(ctypes.byref(header), data)


def forbid_realtime_scheduling() -> bool:
    """Keep this thread, and the threads and processes it starts afterwards, out of SCHED_FIFO/RR.

    Call it early in the main thread (capabilities are per thread and inherited at creation).
    Returns True when a real-time policy can no longer be taken; False where this platform
    cannot tell (not Linux).  The current policy is left as it is: someone who starts a node
    with `chrt` on purpose keeps it.
    """
    if not sys.platform.startswith("linux"):
        return False
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
    except (ValueError, OSError):
        pass
    try:
        _drop_cap_sys_nice(ctypes.CDLL("libc.so.6", use_errno=True))
    except OSError:
        pass
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    if policy in (os.SCHED_FIFO, os.SCHED_RR):
        return True                                  # started real-time on purpose: left as it is
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except PermissionError:
        return True
    os.sched_setscheduler(0, policy, param)          # the probe succeeded: put back what it was
    return False


# The chain with the 50 ms watchdogs (sim/robot -> rt/lowstate -> G1 bridge -> holder, the safety
# supervisor) asks for this SCHED_FIFO priority when `surgbot up --realtime` or `surgbot demo
# --realtime` starts it (env REALTIME_ENV), as ros2_control and the dVRK run their control threads:
# on 2 cores the whole stack oversubscribes the CPU, and a SCHED_OTHER thread waits behind the
# camera and the policy.  Measured (autonomy stack holding the scope, 60 s, box_trainer, 2 cores):
# 8-10 spontaneous watchdog FAULTs (50-68 ms gaps) with every node SCHED_OTHER, 0-2 with the chain
# at FIFO 10.  Low on the 1..99 scale: above every ordinary process, below the kernel's own
# threaded interrupts (50).
REALTIME_ENV = "SURGBOT_REALTIME_PRIORITY"
REALTIME_PRIORITY = 10


def take_realtime_priority() -> str:
    """SCHED_FIFO for this thread (and the threads it starts) when `REALTIME_ENV` asks for it.

    Call it in the main thread before any other thread starts (DDS, rclpy), then
    `forbid_realtime_scheduling()` (which keeps this policy and stops anything from going
    higher).  Returns what happened, for the node's log: "" when nothing was asked.
    """
    asked = os.environ.get(REALTIME_ENV, "")
    if not asked:
        return ""
    try:
        priority = int(asked)
        if not 1 <= priority <= 99:
            raise ValueError
    except ValueError:
        return f"{REALTIME_ENV}={asked!r} is not a priority in 1..99: running SCHED_OTHER"
    if not sys.platform.startswith("linux"):
        return "real-time scheduling is Linux-only here: running SCHED_OTHER"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        return (f"SCHED_FIFO {priority} not permitted (needs CAP_SYS_NICE or an rtprio limit): running "
                "SCHED_OTHER; watchdogs may fire on a loaded machine")
    return f"running SCHED_FIFO {priority}"


# The chain's ROS nodes that stay SCHED_OTHER at `--realtime sim` (G1 bridge ~40 %, endoscope holder
# ~25 % of a core in `surgbot demo`, with 50 and 100 ms watchdogs) ask for a larger share of the
# CPU instead: their session group's nice at CHAIN_NICE (env SHARE_ENV, set by the stack; a weight
# of 3121 against the 1024 of every other group).  Under autogroup scheduling the CPU left by the
# FIFO twin and supervisor (~1.3 cores) is shared between the sessions that want it, and the
# bridge, the largest SCHED_OTHER user, is the one made to wait when they all do.  Measured in
# `surgbot demo` on the 2-core machine (README "Real-time scheduling").  A weight, not FIFO: the
# camera and the policy server still get their turn (at "chain" they starved).
SHARE_ENV = "SURGBOT_GROUP_NICE"
CHAIN_NICE = -5


def take_cpu_share() -> str:
    """This thread's nice (and its session group's, when it leads a session) at the value
    `SHARE_ENV` asks for.  Call it in the main thread before any other thread starts (nice is
    per thread on Linux; threads inherit it), before `forbid_realtime_scheduling()` drops the
    capability a negative value needs.  Returns what happened ("" when nothing was asked)."""
    asked = os.environ.get(SHARE_ENV, "")
    if not asked:
        return ""
    try:
        nice = int(asked)
        if not NICE_MIN <= nice <= NICE_MAX:
            raise ValueError
    except ValueError:
        return f"{SHARE_ENV}={asked!r} is not a nice value in {NICE_MIN}..{NICE_MAX}: left as it is"
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError:
        return (f"nice {nice} not permitted (needs CAP_SYS_NICE or a nice limit): running at nice "
                f"{os.getpriority(os.PRIO_PROCESS, 0)}; watchdogs may fire on a loaded machine")
    why = _set_group_nice(os.getpid(), nice)
    return f"nice {nice}, its session group too" if why is None else f"nice {nice}; its session group not: {why}"


def leave_realtime_scheduling() -> None:
    """Back to SCHED_OTHER (always permitted): for helpers a real-time process starts (the twin's
    renderer must not compete with the chain it serves)."""
    if not sys.platform.startswith("linux"):
        return
    # every thread: the ones made at import time (OpenBLAS's pool) inherited the parent's policy too
    for tid in os.listdir("/proc/self/task"):
        try:
            if os.sched_getscheduler(int(tid)) in (os.SCHED_FIFO, os.SCHED_RR):
                os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
        except (ProcessLookupError, PermissionError):
            pass                                      # a thread that ended meanwhile


def settle_scheduling() -> str:
    """A node process's first call: the real-time priority and CPU share `surgbot up` asked for
    (if any), then the guard.  Returns the line to log about it ("" when no priority was asked)."""
    outcome = "; ".join(done for done in (take_realtime_priority(), take_cpu_share()) if done)
    forbid_realtime_scheduling()
    return outcome


def freeze_startup_heap() -> None:
    """Collect once, then leave everything built so far out of later garbage collections.

    A node's heap after its imports and setup (rclpy, numpy, mujoco, pinocchio: ~100 000 objects)
    made every full (generation-2) collection a 35-45 ms pause of the whole process, measured
    here: as long as the chain's 50 ms watchdogs.  Frozen, a full collection only walks what was
    made since (~0.01 ms right after).  Call it once setup is done, before the loop starts.
    """
    gc.collect()
    gc.freeze()
