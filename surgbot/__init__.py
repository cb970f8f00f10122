"""surgbot: ROS 2 control stack for robot-assisted surgery (G1 endoscope holder, dVRK PSM, VLA).

The design card keeps `sim/`, `policies/`, `teleop/` and `bench/` as top-level
folders of the repository, but they install inside this package
(`surgbot.sim`, ...; setup.py's `package_dir`), so a `pip install` adds one
top-level name.  In a source checkout (tests with `pythonpath = .`, a git
worktree, a colcon source space) the finder below serves the same names from
the folders beside this package, so every import reads `surgbot.sim...`
however the code is found.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"

AREAS = ("sim", "policies", "teleop", "bench")
_PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCE_ROOT = _PACKAGE_DIR.parent


class _SourceAreaFinder(importlib.abc.MetaPathFinder):
    """`surgbot.<area>` -> `<checkout>/<area>/__init__.py`; deeper modules follow its `__path__`."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, area = fullname.partition(".")
        if prefix != __name__ or area not in AREAS:
            return None
        folder = _SOURCE_ROOT / area
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])


_INSTALLED = (_PACKAGE_DIR / "sim").is_dir()   # package_dir put the areas inside the package


def area_path(area: str) -> Path:
    """Folder of one of `AREAS` (for data files such as `sim/models/*.xml`), installed or not."""
    if area not in AREAS:
        raise ValueError(f"unknown area {area!r}; one of {AREAS}")
    return (_PACKAGE_DIR if _INSTALLED else _SOURCE_ROOT) / area


if not _INSTALLED and (_SOURCE_ROOT / "setup.py").is_file():
    sys.meta_path.insert(0, _SourceAreaFinder())
