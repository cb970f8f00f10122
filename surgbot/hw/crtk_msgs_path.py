"""Make `crtk_msgs` (the dVRK's CRTK messages) importable without sourcing a ROS workspace.

Where `crtk_msgs` comes from, first match wins:

1. a ROS 2 environment that already provides it (a sourced dVRK workspace or
   ROS install: its Python package is on `sys.path` through `PYTHONPATH`, its
   libraries on `LD_LIBRARY_PATH`): used as is, ours is never loaded, so a
   newer `crtk_msgs` of a dVRK workspace is never shadowed;
2. `$SURGBOT_CRTK_MSGS_PREFIX`, or `<venv>/opt/crtk_msgs`, which
   `scripts/build_interfaces.sh` builds from `ros2_ws/src/crtk_msgs` with the
   ROS 2 PyPI wheels (the bootstrap runs it).  Its `site-packages` is
   appended to the END of `sys.path` and its typesupport libraries are loaded
   with `RTLD_GLOBAL` by full path: the ROS type support later opens them by
   name (`libcrtk_msgs__rosidl_typesupport_c.so`, ...), and the dynamic loader
   answers a name with a library of that name already loaded, so
   `LD_LIBRARY_PATH` does not have to be set before the process starts.

Call `ensure_crtk_msgs()` before `import crtk_msgs` (module imports do it:
`surgbot.hw.crtk` and the PSM twin).  ImportError with the fix when neither
exists.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
import threading
from pathlib import Path

PACKAGE = "crtk_msgs"
PREFIX_ENV = "SURGBOT_CRTK_MSGS_PREFIX"
STAMP_NAME = ".surgbot-stamp"
# Dependency order: each library's NEEDED entries are loaded before it.
LIBRARIES = (
    "rosidl_generator_c",
    "rosidl_typesupport_introspection_c",
    "rosidl_typesupport_fastrtps_c",
    "rosidl_typesupport_c",
    "rosidl_typesupport_introspection_cpp",
    "rosidl_typesupport_fastrtps_cpp",
    "rosidl_typesupport_cpp",
    "rosidl_generator_py",
)

_lock = threading.Lock()
_source: str | None = None
_handles: list[ctypes.CDLL] = []     # kept open for the life of the process


def default_prefix() -> Path:
    """Where scripts/build_interfaces.sh installs crtk_msgs for this interpreter."""
    override = os.environ.get(PREFIX_ENV)
    if override:
        return Path(override)
    return Path(sys.prefix) / "opt" / PACKAGE


def site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _provided_by_environment() -> bool:
    """A real crtk_msgs package on sys.path (not a folder that merely has the name, e.g. our sources)."""
    spec = importlib.util.find_spec(PACKAGE)
    return spec is not None and spec.origin not in (None, "namespace") and spec.origin.endswith("__init__.py")


def ensure_crtk_msgs() -> str:
    """Make `import crtk_msgs` work; returns where it comes from ("environment" or our prefix)."""
    global _source
    with _lock:
        if _source is not None:
            return _source
        if PACKAGE in sys.modules or _provided_by_environment():
            _source = "environment"
            return _source
        prefix = default_prefix()
        site = site_packages(prefix)
        if not (site / PACKAGE / "__init__.py").is_file() or not (prefix / STAMP_NAME).is_file():
            raise ImportError(
                f"{PACKAGE} is not available: no ROS 2 workspace provides it and {prefix} has no complete "
                f"build; run scripts/build_interfaces.sh (the bootstrap does) or source a dVRK workspace")
        for name in LIBRARIES:
            lib = prefix / "lib" / f"lib{PACKAGE}__{name}.so"
            if not lib.is_file():
                raise ImportError(f"{PACKAGE}: {lib} is missing; rerun scripts/build_interfaces.sh")
            _handles.append(ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL))
        sys.path.append(str(site))
        importlib.invalidate_caches()
        _source = str(prefix)
        return _source
