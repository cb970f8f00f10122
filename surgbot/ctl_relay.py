"""The stack's ctl relay: `surgbot ctl` without a DDS participant of its own.

A `surgbot ctl` that starts its own ROS node adds a DDS participant to the
running stack, which every process then discovers and matches while it runs
its loops.  Measured on the 2-core machine with the whole stack up
(`surgbot up --console --policy default`): `/g1/joint_states` gaps of 20-62 ms
during a `ctl state` against 7-13 ms idle (a bare `import rclpy` 6-18 ms, a
UDP-only participant the same 23-35 ms), and the supervisor's 50 ms lowstate
watchdog FAULTed at `ctl engage` (issue 17's full-stack test) and before
`ctl estop` arrived (issue 16's `estop_by_surgbot_ctl`).

So the stack launcher (`surgbot up`, and the fault suite's stack, both
`surgbot.up.Stack`) keeps one ctl node (`surgbot.ctl._Session`) from the
stack's start, discovered with the rest, and serves the same actions over a
Unix socket only this user can open (`socket_path`: per user and
`ROS_DOMAIN_ID`).  `surgbot ctl` asks it first and starts a node of its own
only when no relay answers (a stack from `ros2 launch`).  One JSON line each
way: `{"action", "text", "timeout"}` -> `{"rc", "out", "err"}` (or
`{"error"}`: the request's arguments were refused, exit 2 as the CLI's own).
Commands run one at a time, as from one shell.

The same node tells the safety supervisor when one of the stack's node
processes exits (`report_exit`, on `contract.SAFETY_PROCESS_EXIT`; the
launcher hears it from the kernel at once: `surgbot.exit_watch`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import threading
from pathlib import Path

from surgbot import contract, ctl
from surgbot.errors import CliError

MAX_REQUEST_BYTES = 4096
MAX_REPLY_BYTES = 1 << 20         # a reply carries what the command prints (a refusal lists every cause)
ACCEPT_POLL_S = 0.5               # how often the serving thread looks at its stop flag
REQUEST_READ_TIMEOUT_S = 5.0      # a client that connects and sends no line is dropped
REPLY_MARGIN_S = 30.0             # beyond the action's own timeout (psm-home waits >= 20 s)
SOCKET_MODE = 0o600


def socket_path(domain_id: str | None = None) -> Path:
    """The relay's socket for this user and ROS domain (`ROS_DOMAIN_ID`, default 0)."""
    domain = os.environ.get("ROS_DOMAIN_ID", "0") if domain_id is None else domain_id
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"surgbot-ctl-{os.getuid()}-domain{domain.strip() or '0'}.sock"


def _read_line(conn: socket.socket, limit: int) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(MAX_REQUEST_BYTES)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError(f"line longer than {limit} bytes")
    return data.split(b"\n", 1)[0]


def request(action: str, text: str | None, timeout: float, path: Path | None = None) -> tuple[int, str, str] | None:
    """Run one action through a listening relay: (rc, stdout, stderr); None when none listens."""
    path = socket_path() if path is None else path
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            conn.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None                      # no relay (or a stale socket file): the caller's own node
        conn.settimeout(timeout + REPLY_MARGIN_S)
        conn.sendall(json.dumps({"action": action, "text": text, "timeout": timeout}).encode() + b"\n")
        line = _read_line(conn, MAX_REPLY_BYTES)
    except (OSError, ValueError) as exc:
        raise CliError(f"the stack's ctl relay ({path}) did not answer: {exc}") from exc
    finally:
        conn.close()
    try:
        reply = json.loads(line)
        if "error" in reply:
            raise CliError(str(reply["error"]))
        return int(reply["rc"]), str(reply["out"]), str(reply["err"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(f"the stack's ctl relay ({path}) sent a malformed reply: {line[:200]!r}") from exc


class CtlRelay:
    """Serves `surgbot ctl` actions on `socket_path()` from one long-lived ctl node."""

    def __init__(self, path: Path | None = None):
        self.path = socket_path() if path is None else path
        if self.path.exists():
            if request("state", None, 1.0, self.path) is not None:
                raise RuntimeError(f"another stack serves ctl on {self.path} (same user and ROS_DOMAIN_ID)")
            self.path.unlink()               # left by a stack that was killed
        self.session = ctl._Session(signal_handlers=False)
        from std_msgs.msg import String

        self._exit_msg = String
        self._exit_pub = self.session.node.create_publisher(String, contract.SAFETY_PROCESS_EXIT, 10)
        self.exits_reported = 0
        self.requests = 0
        self._stop = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._server.bind(str(self.path))
            os.chmod(self.path, SOCKET_MODE)
            self._server.listen(4)
            self._server.settimeout(ACCEPT_POLL_S)
        except OSError:
            self._server.close()
            self.session.close()
            raise
        self._thread = threading.Thread(target=self._serve, name="ctl-relay", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return                       # closed
            with conn:
                conn.settimeout(REQUEST_READ_TIMEOUT_S)
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(self._answer(conn)).encode() + b"\n")

    def _answer(self, conn: socket.socket) -> dict:
        try:
            req = json.loads(_read_line(conn, MAX_REQUEST_BYTES))
            name, text, timeout = req["action"], req.get("text"), req["timeout"]
            if not isinstance(name, str) or not (text is None or isinstance(text, str)):
                raise CliError("malformed request: action and text must be strings")
            ctl.check_request(name, text, timeout)
            with self.session.lock:
                self.requests += 1
                rc, out, err = ctl.execute(self.session, name, text, float(timeout))
            return {"rc": rc, "out": out, "err": err}
        except CliError as exc:
            return {"error": str(exc)}
        except (ValueError, KeyError, TypeError, OSError) as exc:
            return {"error": f"malformed request: {type(exc).__name__}: {exc}"}

    def report_exit(self, node: str, pid: int, returncode: int | None) -> None:
        """Tell the supervisor that node process `node` exited (contract.SAFETY_PROCESS_EXIT)."""
        self._exit_pub.publish(self._exit_msg(data=json.dumps(
            {"node": node, "pid": int(pid), "returncode": returncode, "reporter": "surgbot up"})))
        self.exits_reported += 1

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=ACCEPT_POLL_S * 4)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.session.close()
