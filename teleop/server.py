"""The console server: HTTPS page + WSS socket on one port (aiohttp), ROS-free.

What reaches the robot goes through `ConsoleSink` (the node publishes it);
what the page shows comes from `publish_frame` / `set_robot_status` (thread
safe: the node calls them from its ROS thread).

Security, in the order a connection meets it: TLS only (a plain-HTTP client
gets no answer); the Host header must be an IP literal, localhost, this
machine's name or an allowed host (DNS rebinding); a WebSocket's Origin must
be the console's own; the first message must be a `hello` with the token
(constant-time compare) within `hello_timeout_s`, else close 4401 and
nothing is published; one operator socket (a second is closed 4409 with a
reason), view-only sockets may watch.  Every later message is size- and
rate-limited and strictly validated (`teleop.protocol`); a bad one is
dropped and counted by reason, never fatal.  `xr` and `record` (episode
start/stop/discard, answered in the status) are the operator's alone.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web
from yarl import URL

from surgbot.teleop import protocol as P
from surgbot.teleop.config import ConsoleConfig
from surgbot.teleop.video import FrameSlot, VideoStats
from surgbot.teleop.xr_link import XrLink, XrSink

log = logging.getLogger("surgbot.console")

CLOSE_UNAUTHORIZED = 4401
CLOSE_OPERATOR_TAKEN = 4409
HARD_MAX_MESSAGE = 1 << 20          # aiohttp closes (1009) above this; below it we drop and count
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png",
                ".svg": "image/svg+xml"}
VENDOR = {"iwer.min.js": Path("node_modules/iwer/build/iwer.min.js")}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: "
                                "data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class ConsoleSink(XrSink, Protocol):
    def on_record(self, action: str) -> None: ...


class _Client:
    """One authenticated socket."""

    def __init__(self, ws: web.WebSocketResponse, role: str, cfg: ConsoleConfig, now: float):
        self.ws = ws
        self.role = role
        self.tokens = float(cfg.rate_burst)
        self.refill_t = now
        self.wake = asyncio.Event()
        self.last_seq = -1
        self.unacked: dict[int, tuple[float, float]] = {}      # seq -> (capture ms, send time s)


class ConsoleServer:
    def __init__(self, cfg: ConsoleConfig, token: str, sink: ConsoleSink, web_root: Path,
                 ssl_context: ssl.SSLContext | None, clock: Callable[[], float] = time.time):
        if not token:
            raise ValueError("a console needs a token")
        self.cfg = cfg
        self._token = token.encode()
        self.sink = sink
        self.web_root = Path(web_root)
        self.ssl = ssl_context
        self.clock = clock
        self.rejected: Counter = Counter()
        self.xr = XrLink(sink, cfg.link_timeout_s, clock)     # the operator's poses -> sink, link watchdog
        self.clients: set[_Client] = set()
        self.operator: _Client | None = None
        self.frames = FrameSlot()
        self.video = VideoStats()
        self.robot_status: dict = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._static = self._static_files()

    # ------------------------------------------------------------------ lifecycle
    def _static_files(self) -> dict[str, Path]:
        files = {p.name: p for p in self.web_root.iterdir() if p.is_file() and p.suffix in STATIC_TYPES}
        for name, rel in VENDOR.items():
            if (self.web_root / rel).is_file():
                files[name] = self.web_root / rel
        return files

    async def start(self) -> int:
        self.loop = asyncio.get_running_loop()
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/static/{name}", self._file)
        app.router.add_get("/vendor/{name}", self._file)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port, ssl_context=self.ssl,
                           reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]        # the bound port when cfg.port == 0
        self._tasks = [asyncio.create_task(self.xr.watchdog()), asyncio.create_task(self._status_loop())]
        return self.port

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for c in list(self.clients):
            await c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"console stopping")
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ thread-safe inputs
    def publish_frame(self, jpeg: bytes, capture_ms: float) -> None:
        """Newest endoscope frame (any thread); older unsent frames are dropped, never queued."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._new_frame, jpeg, capture_ms)

    def set_robot_status(self, status: dict) -> None:
        self.robot_status = dict(status)       # replaced whole: the status loop reads one consistent dict

    # ------------------------------------------------------------------ HTTP
    def _host_ok(self, host: str) -> bool:
        try:
            name = URL(f"https://{host}").host or ""
        except ValueError:
            return False
        try:
            ipaddress.ip_address(name.strip("[]"))
            return True
        except ValueError:
            pass
        hostname = socket.gethostname().lower()
        return name.lower() in {"localhost", hostname, f"{hostname}.local", *self.cfg.allowed_hosts}

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if not self._host_ok(request.host):
            self.rejected["bad_host"] += 1
            return web.Response(status=421, text="unknown host")
        resp = await handler(request)
        if not isinstance(resp, web.WebSocketResponse):
            resp.headers.update(SECURITY_HEADERS)
        return resp

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.web_root / "index.html", headers={"Content-Type": "text/html"})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        path = self._static.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": STATIC_TYPES[path.suffix]})

    def _origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin", "")
        try:
            o, h = URL(origin), URL(f"https://{request.host}")
        except ValueError:
            return False
        return o.scheme == "https" and o.host == h.host and o.port == h.port and not o.path.strip("/")

    # ------------------------------------------------------------------ WebSocket
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request):
            self.rejected["bad_origin"] += 1
            return web.Response(status=403, text="foreign origin")
        ws = web.WebSocketResponse(max_msg_size=HARD_MAX_MESSAGE, heartbeat=None, compress=False)
        await ws.prepare(request)
        client = await self._authenticate(ws)
        if client is None:
            return ws
        self.clients.add(client)
        sender = asyncio.create_task(self._send_video(client))
        try:
            async for msg in ws:
                self._on_message(client, msg)
        finally:
            sender.cancel()
            self.clients.discard(client)
            if client is self.operator:
                self.operator = None
                self.xr.lose("operator disconnected")
        return ws

    async def _authenticate(self, ws: web.WebSocketResponse) -> _Client | None:
        try:
            msg = await ws.receive(timeout=self.cfg.hello_timeout_s)
        except TimeoutError:
            msg = None
        role = None
        if msg is not None and msg.type == WSMsgType.TEXT and len(msg.data) <= self.cfg.max_message_bytes:
            try:
                obj = P.loads(msg.data)
                if obj.get("type") == "hello":
                    token, role = P.parse_hello(obj)
                    if not hmac.compare_digest(token.encode(), self._token):
                        role = None
            except P.Rejected:
                role = None
        if role is None:
            self.rejected["auth_failed"] += 1
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"unauthorized")
            return None
        if role == "operator" and self.operator is not None:
            self.rejected["operator_taken"] += 1
            await ws.close(code=CLOSE_OPERATOR_TAKEN, message=b"another operator is connected")
            return None
        client = _Client(ws, role, self.cfg, self.clock())
        latest = self.frames.latest
        client.last_seq = latest.seq - 1 if latest is not None else -1    # frames before it joined: not drops
        client.wake.set()
        if role == "operator":
            self.operator = client
        await ws.send_str(json.dumps({"type": "welcome", "role": role}))
        return client

    def _on_message(self, client: _Client, msg) -> None:
        now = self.clock()
        client.tokens = min(float(self.cfg.rate_burst),
                            client.tokens + (now - client.refill_t) * self.cfg.max_message_rate_hz)
        client.refill_t = now
        if client.tokens < 1.0:
            self.rejected["rate_limited"] += 1
            return
        client.tokens -= 1.0
        if msg.type != WSMsgType.TEXT:
            self.rejected["binary" if msg.type == WSMsgType.BINARY else "bad_frame"] += 1
            return
        if len(msg.data) > self.cfg.max_message_bytes:
            self.rejected["too_big"] += 1
            return
        try:
            obj = P.loads(msg.data)
            kind = obj.get("type")
            if kind == "xr":
                if client is not self.operator:
                    raise P.Rejected("not_operator")
                self.xr.on_sample(P.parse_xr(obj), now)
            elif kind == "ack":
                self._on_ack(client, P.parse_ack(obj), now)
            elif kind == "record":
                if client is not self.operator:
                    raise P.Rejected("not_operator")
                self.sink.on_record(P.parse_record(obj))
            else:
                raise P.Rejected("bad_type", f"message type {str(kind)[:20]!r}")
        except P.Rejected as exc:
            self.rejected[exc.reason] += 1

    # ------------------------------------------------------------------ video
    def _new_frame(self, jpeg: bytes, capture_ms: float) -> None:
        self.frames.put(jpeg, capture_ms)
        for c in self.clients:
            c.wake.set()

    def _on_ack(self, client: _Client, seq: int, now: float) -> None:
        sent = client.unacked.pop(seq, None)
        if sent is None:
            raise P.Rejected("bad_ack")
        capture_ms, _ = sent
        self.video.glass_to_glass_ms.append(now * 1e3 - capture_ms)
        client.wake.set()

    async def _send_video(self, client: _Client) -> None:
        while True:
            await client.wake.wait()
            client.wake.clear()
            frame = self.frames.latest
            if frame is None or frame.seq == client.last_seq:
                continue
            now = self.clock()
            for seq in [s for s, (_, t) in client.unacked.items() if now - t > self.cfg.ack_timeout_s]:
                del client.unacked[seq]
            if len(client.unacked) >= self.cfg.max_unacked_frames:
                continue                                  # an ack wakes us; the newest frame is sent then
            if frame.seq > client.last_seq + 1:
                self.video.dropped += frame.seq - client.last_seq - 1
            client.last_seq = frame.seq
            client.unacked[frame.seq] = (frame.capture_ms, now)
            self.video.age_at_send_ms.append(now * 1e3 - frame.capture_ms)
            self.video.sent += 1
            try:
                await client.ws.send_bytes(frame.payload)
            except (ConnectionError, RuntimeError):
                return

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        now = self.clock()
        xr = self.xr
        s = xr.last_xr
        buttons = s.joy()[0] if s is not None and xr.up else [0] * P.N_BUTTONS
        g2g = list(self.video.glass_to_glass_ms)[-30:]
        age = list(self.video.age_at_send_ms)[-30:]
        return {
            "type": "status",
            "link": "up" if xr.up else "down",
            "operator": self.operator is not None,
            "viewers": sum(1 for c in self.clients if c.role == "viewer"),
            "echo_t": s.t_ms if s is not None else None,
            "echo_held_ms": round((now - xr.last_xr_t) * 1e3, 2) if xr.last_xr_t else None,
            "xr_rate_hz": round(xr.rate_hz(), 1),
            "clutch": bool(buttons[P.BTN_CLUTCH]),
            "deadman": bool(buttons[P.BTN_DEADMAN]),
            "video_age_ms": round(float(np.median(age)), 2) if age else None,
            "glass_to_glass_ms": round(float(np.median(g2g)), 2) if g2g else None,
            "video_sent": self.video.sent,
            "video_dropped": self.video.dropped,
            "accepted": xr.accepted,
            "coalesced": xr.coalesced,
            "dropped_stale": xr.dropped_stale,
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
            **self.robot_status,
        }

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.status_period_s)
            if not self.clients:
                continue
            text = json.dumps(self.status())
            for c in list(self.clients):
                try:
                    await c.ws.send_str(text)
                except (ConnectionError, RuntimeError):
                    pass
