"""One result/state convention for every core.

* A core's mode machine is a `class State(enum.StrEnum)` of its own (the value is
  the name the contract publishes, e.g. `/endoscope/mode`).
* Every command a core accepts or refuses returns a `Result`: `ok`, a
  one-line `reason` when refused (what a node logs and a service returns as
  its message), and a typed `value` payload when the command produces one
  (never smuggled into `reason`).  `Result` is truthy when ok.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Result(Generic[T]):
    ok: bool
    reason: str = ""
    value: T | None = None

    def __bool__(self) -> bool:
        return self.ok

    @classmethod
    def success(cls, value: T | None = None, reason: str = "") -> Result[T]:
        return cls(True, reason, value)

    @classmethod
    def failure(cls, reason: str) -> Result[T]:
        if not reason:
            raise ValueError("a refused command needs a reason")
        return cls(False, reason, None)
