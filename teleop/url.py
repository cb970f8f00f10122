"""The line the console prints once it serves, and how launchers and tests read its port back.

`surgbot console --port 0` binds a free port and says which in this line (with
the token in the URL's fragment, which browsers never send to the server), so
the format is a small contract between the console and whatever started it:
it is written and parsed here only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

URL_LINE_PREFIX = "teleop console: https://"
# the host part may be "<this machine's address>" (bound to every interface), so: anything up to ":port/#token="
_PORT_RE = re.compile(re.escape(URL_LINE_PREFIX) + r"(?:\[[^\]\n]*\]|[^/\[\n]*?):(\d+)/#token=")


def url_line(host: str, port: int, token: str) -> str:
    """The line, e.g. `teleop console: https://127.0.0.1:8443/#token=...` (IPv6 hosts in brackets)."""
    url_host = f"[{host}]" if ":" in host else host
    return f"{URL_LINE_PREFIX}{url_host}:{port}/#token={token}"


def served_port(output: str) -> int | None:
    """The port of the first URL line in a console's output; None before it has printed one."""
    m = _PORT_RE.search(output)
    return int(m.group(1)) if m else None


POLL_S = 0.2            # how often a starter looks at the console's output


def wait_for_served_port(read_output: Callable[[], str], alive: Callable[[], bool], timeout_s: float) -> int:
    """Poll `read_output()` for the URL line until `timeout_s`; the port.  Raises RuntimeError (with
    the output's tail) when `alive()` turns false first or no line came in time."""
    end = time.monotonic() + timeout_s
    while True:
        output = read_output()
        port = served_port(output)
        if port is not None:
            return port
        if not alive():
            raise RuntimeError("the console exited before printing its URL:\n" + output[-2000:])
        if time.monotonic() >= end:
            raise RuntimeError(f"the console printed no URL in {timeout_s:.0f} s:\n" + output[-2000:])
        time.sleep(POLL_S)
