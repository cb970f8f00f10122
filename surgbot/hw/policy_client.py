"""Client of the policy server (contract section 7), and the wire format both sides use.

pyzmq REQ/REP, msgpack maps; numpy arrays travel as
`{"__ndarray__": true, "dtype": str, "shape": [..], "data": bytes}`, never
pickle, and only plain numeric dtypes are accepted back.  This module imports
numpy, msgpack and zmq only (no torch): the ROS node and any outside program
can ask a policy on another machine for actions without a learning stack.

A REQ socket that timed out cannot send again, so the client closes it and
opens a fresh one before the next request (the "lazy pirate" pattern).

`server_lost()` tells, without waiting, whether the TCP connection to the
server dropped and has not come back (a zmq socket monitor): a killed server
is known in milliseconds, not at the next request's timeout.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import msgpack
import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

NDARRAY_TAG = "__ndarray__"
ALLOWED_DTYPE_KINDS = "biuf"        # bool, signed, unsigned, float: nothing that could hold objects
MAX_ARRAY_BYTES = 64 * 1024 * 1024  # an endoscope frame is < 1 MB; this bounds a hostile request
DEFAULT_TIMEOUT_S = 1.0


class PolicyServerError(RuntimeError):
    """The server answered {"error": ...}."""


class PolicyTimeout(TimeoutError):
    """No reply within the timeout (server down, slow or unreachable)."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in ALLOWED_DTYPE_KINDS:
            raise TypeError(f"arrays of dtype {obj.dtype} are not sent")
        return {NDARRAY_TAG: True, "dtype": obj.dtype.str, "shape": list(obj.shape),
                "data": obj.tobytes(order="C")}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _decode(obj: dict) -> Any:
    if obj.get(NDARRAY_TAG) is not True:
        return obj
    dtype_s, shape, data = obj.get("dtype"), obj.get("shape"), obj.get("data")
    if not isinstance(dtype_s, str) or not isinstance(shape, list) or not isinstance(data, bytes):
        raise ValueError("ndarray needs dtype (str), shape (list) and data (bytes)")
    try:
        dtype = np.dtype(dtype_s)
    except TypeError as exc:
        raise ValueError(f"unknown dtype {dtype_s!r}") from exc
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.hasobject:
        raise ValueError(f"dtype {dtype_s!r} not allowed")
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape) or len(shape) > 8:
        raise ValueError(f"bad shape {shape!r}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count * dtype.itemsize != len(data) or len(data) > MAX_ARRAY_BYTES:
        raise ValueError(f"{len(data)} data bytes do not make a {dtype_s} array of shape {shape}")
    return np.frombuffer(data, dtype=dtype).reshape(tuple(shape))


def pack(obj: Any) -> bytes:
    """Message -> msgpack bytes (numpy arrays as tagged maps)."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpack(raw: bytes) -> Any:
    """msgpack bytes -> message; ValueError on anything malformed (arrays read-only)."""
    try:
        return msgpack.unpackb(raw, object_hook=_decode, raw=False, strict_map_key=True,
                               max_bin_len=MAX_ARRAY_BYTES, max_str_len=1 << 20,
                               max_array_len=1 << 16, max_map_len=1 << 12)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises several types for garbage
        raise ValueError(f"not a msgpack message ({type(exc).__name__})") from exc


class PolicyClient:
    """Blocking REQ client; every call returns within `timeout_s` or raises PolicyTimeout."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5555, timeout_s: float = DEFAULT_TIMEOUT_S,
                 context: zmq.Context | None = None):
        if not 0 < port < 65536:
            raise ValueError(f"port {port} outside 1..65535")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        self.endpoint = f"tcp://{host}:{int(port)}"
        self.timeout_s = float(timeout_s)
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        # the connection watch: read by server_lost() on another thread than the requests' one
        self._monitor: zmq.Socket | None = None
        self._monitor_lock = threading.Lock()
        self._was_connected = False
        self._lost = False

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            s = self._ctx.socket(zmq.REQ)
            s.setsockopt(zmq.LINGER, 0)
            monitor = s.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
            s.connect(self.endpoint)
            self._sock = s
            with self._monitor_lock:
                self._monitor = monitor
        return self._sock

    def close(self) -> None:
        with self._monitor_lock:
            if self._monitor is not None:
                self._monitor.close(linger=0)
                self._monitor = None
            # a fresh socket starts unknown: a stale "lost" would hold a re-enabled policy whose
            # restarted server is fine (its requests' timeouts still catch a server that stays dead)
            self._was_connected = self._lost = False
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def server_lost(self) -> bool:
        """The connection to the server dropped and has not come back (never blocks).

        False before the first connection (a server still starting is the timeout's business) and
        while no socket is open.  Safe to call from another thread than the requests'.
        """
        with self._monitor_lock:
            m = self._monitor
            while m is not None and m.poll(0):
                event = recv_monitor_message(m)["event"]
                if event == zmq.EVENT_CONNECTED:
                    self._was_connected, self._lost = True, False
                elif event == zmq.EVENT_DISCONNECTED and self._was_connected:
                    self._lost = True
            return self._lost

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, message: dict, timeout_s: float | None = None) -> dict:
        """Send one message, return the reply map; PolicyServerError for {"error": ...}."""
        sock = self._socket()
        sock.send(pack(message))
        if not sock.poll(int(1000 * (timeout_s or self.timeout_s)), zmq.POLLIN):
            self.close()   # a REQ socket that missed its reply cannot send again
            raise PolicyTimeout(f"no reply from {self.endpoint} within {timeout_s or self.timeout_s:.3f} s")
        reply = unpack(sock.recv())
        if not isinstance(reply, dict):
            raise PolicyServerError(f"reply is not a map: {type(reply).__name__}")
        if "error" in reply:
            raise PolicyServerError(str(reply["error"]))
        return reply

    def ping(self) -> float:
        """Round trip in milliseconds."""
        t0 = time.perf_counter()
        self.request({"cmd": "ping"})
        return (time.perf_counter() - t0) * 1e3

    def metadata(self) -> dict:
        return self.request({"cmd": "metadata"})

    def reset(self) -> None:
        self.request({"cmd": "reset"})

    def infer(self, image: np.ndarray, state: np.ndarray, instruction: str,
              timeout_s: float | None = None) -> tuple[np.ndarray, float]:
        """(actions float32 [H, 10], the server's inference milliseconds)."""
        image = np.asarray(image)
        if image.dtype != np.uint8:   # a float image in [0, 1] cast to uint8 would be black: refuse it
            raise ValueError(f"image must be uint8 HxWx3, got {image.dtype}")
        reply = self.request({"cmd": "infer", "obs": {
            "image": image, "state": np.asarray(state, dtype=np.float32),
            "instruction": str(instruction)}}, timeout_s)
        actions = reply.get("actions")
        if not isinstance(actions, np.ndarray) or actions.ndim != 2:
            raise PolicyServerError("reply has no [H, D] 'actions' array")
        return np.array(actions, dtype=np.float32), float(reply.get("infer_ms", float("nan")))
