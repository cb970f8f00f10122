"""Policy server (contract section 7): pyzmq REP, msgpack, one reply per request, never dies on input.

Requests: {"cmd": "ping"}, {"cmd": "metadata"}, {"cmd": "reset"},
{"cmd": "infer", "obs": {"image": uint8 HxWx3, "state": float [10],
"instruction": str}}.  Replies: maps; infer -> {"actions": float32 [H, 10],
"infer_ms": float}; anything wrong -> {"error": str} and the loop goes on.
`handle()` is the whole protocol as a pure function of the request bytes, so
it is tested without sockets; `serve()` only moves bytes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import numpy as np
import zmq

from surgbot.hw.policy_client import pack, unpack

log = logging.getLogger("surgbot.policy_server")

POLL_MS = 100                 # how often the loop looks at the stop flag
MAX_MESSAGE_BYTES = 16 << 20  # zmq drops larger messages before they are read


class PolicyServer:
    """Wraps a runtime with `infer(image, state, instruction)`, `metadata()`, `reset()`."""

    def __init__(self, runtime, host: str = "127.0.0.1", port: int = 5555):
        if not 0 < int(port) < 65536:
            raise ValueError(f"port {port} outside 1..65535")
        self.runtime = runtime
        self.endpoint = f"tcp://{host}:{int(port)}"
        self.requests = 0
        self.errors = 0
        self._stop = threading.Event()

    # --- protocol -----------------------------------------------------------
    def _infer(self, req: dict) -> dict:
        obs = req.get("obs")
        if not isinstance(obs, dict):
            raise ValueError("infer needs 'obs': {image, state, instruction}")
        missing = [k for k in ("image", "state", "instruction") if k not in obs]
        if missing:
            raise ValueError(f"obs lacks {missing}")
        state = obs["state"]
        if isinstance(state, np.ndarray) and state.dtype.kind == "f":
            state = state.astype(np.float32)
        actions, ms = self.runtime.infer(obs["image"], state, obs["instruction"])
        return {"actions": np.ascontiguousarray(actions, dtype=np.float32), "infer_ms": float(ms)}

    def handle(self, raw: bytes) -> bytes:
        """Request bytes -> reply bytes; every failure becomes {"error": ...}."""
        self.requests += 1
        try:
            req = unpack(raw)
            if not isinstance(req, dict):
                raise ValueError("request must be a map")
            cmd = req.get("cmd")
            if cmd == "ping":
                reply = {"ok": True, "time": time.time()}
            elif cmd == "metadata":
                reply = self.runtime.metadata()
            elif cmd == "reset":
                self.runtime.reset()
                reply = {"ok": True}
            elif cmd == "infer":
                reply = self._infer(req)
            else:
                raise ValueError(f"unknown cmd {cmd!r} (ping, metadata, reset, infer)")
        except Exception as exc:  # noqa: BLE001 - the server answers every request, whatever it was
            self.errors += 1
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.debug("request rejected: %s", msg)
            return pack({"error": f"{type(exc).__name__}: {msg}"[:500]})
        return pack(reply)

    # --- transport ----------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def serve(self, ready: threading.Event | None = None) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        sock.bind(self.endpoint)
        if ready is not None:
            ready.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(POLL_MS, zmq.POLLIN):
                    continue
                frames = sock.recv_multipart()
                if len(frames) != 1:
                    self.requests += 1
                    self.errors += 1
                    sock.send(pack({"error": f"ValueError: expected one frame, got {len(frames)}"}))
                    continue
                sock.send(self.handle(frames[0]))
        finally:
            sock.close(linger=0)


def run_server(runtime, host: str, port: int) -> int:
    """Serve until SIGINT/SIGTERM; prints one ready line with the endpoint and metadata."""
    server = PolicyServer(runtime, host, port)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    meta = runtime.metadata()
    print(f"policy server on {server.endpoint}: {meta['model']} {meta['checkpoint_id']} "
          f"H={meta['action_horizon']} image={meta['image_size']}", flush=True)
    server.serve()
    print(f"policy server stopped: {server.requests} requests, {server.errors} rejected", flush=True)
    return 0
