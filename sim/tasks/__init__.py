"""Surgical tasks in the box trainer, shared by the ROS twin and the Gymnasium environments."""

from __future__ import annotations

from surgbot.sim.tasks.base import BoxGeometry, Layout, Monitor, Status, Task, apply_layout, configure_solver
from surgbot.sim.tasks.needle_pick import NeedlePickTask
from surgbot.sim.tasks.peg_transfer import PegTransferTask
from surgbot.sim.tasks.reach import ReachTask

TASKS: dict[str, Task] = {t.name: t for t in (ReachTask(), NeedlePickTask(), PegTransferTask())}
TASK_NAMES = tuple(TASKS)


def get_task(name: str) -> Task:
    """The task called `name`; ValueError naming the known ones otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (choose from {', '.join(TASK_NAMES)})")
    return TASKS[name]


__all__ = ["TASKS", "TASK_NAMES", "BoxGeometry", "Layout", "Monitor", "Status", "Task", "apply_layout",
           "configure_solver", "get_task"]
