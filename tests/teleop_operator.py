"""A scripted operator speaking the console page's protocol, in its own process (tests/test_teleop_sim.py).

Its own process so the 90 Hz stream does not share a GIL with the test's
rclpy executor (ground truth at hundreds of messages a second): on a loaded
box that sharing alone opened 200 ms gaps, which the console rightly treats
as a lost link.  Commands arrive as JSON lines on stdin:
`{"hand": [dx, dy, dz], "seconds": T}` (OpenXR frame, relative), `{"head_yaw": deg, "seconds": T}`,
`{"clutch": 0|1}`, `{"deadman": 0|1}`, `{"a": 0|1}`, `{"b": 0|1}` (right hand buttons),
`{"zoom": -1..1}` (left stick y, forward = -1), `{"streaming": true|false}`, `{"quit": true}`;
faults for the fault-injection suite, each in the next sample only: `{"nan": true}` (a NaN in
the right hand's pose), `{"glitch": [dx, dy, dz]}` (the right hand displaced for one sample).
It prints `welcome` once authenticated, `ack N` after each command, and, when streaming stops,
`streaming stopped; last sample sent at T`, T its time.monotonic() (one clock for every process
here) of the last sample it sent.

    python -m tests.teleop_operator PORT TOKEN
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import ssl
import sys
import time
import traceback

import aiohttp
import numpy as np

from surgbot.teleop import protocol as P

RATE_HZ = 90.0
STOPPED = "streaming stopped; last sample sent at"
GAP_REPORT_S = 0.1                    # a longer gap between two of our sends is printed (the log says who stalled)
HAND_START = (0.25, 1.1, -0.35)      # OpenXR local-floor: right of, below and in front of the eyes


def xr_matrix(yaw_deg: float = 0.0, p=(0.0, 1.6, 0.0)) -> list[float]:
    a = math.radians(yaw_deg)            # about +y (up): a left turn
    m = np.eye(4)
    m[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    m[:3, 3] = p
    return P.column_major(m)


class Ramp:
    """A value moving linearly from `a` to `b` over `seconds` (wall clock)."""

    def __init__(self, a, b=None, seconds: float = 0.0):
        self.a, self.b = np.asarray(a, float), np.asarray(a if b is None else b, float)
        self.t0, self.T = time.monotonic(), seconds

    def now(self) -> np.ndarray:
        s = 1.0 if self.T <= 0 else min(1.0, (time.monotonic() - self.t0) / self.T)
        return self.a + (self.b - self.a) * s


class Operator:
    def __init__(self):
        self.hand = Ramp(HAND_START)
        self.head_yaw = Ramp(0.0)
        self.clutch = 0.0
        self.deadman = 0.0
        self.a = self.b = 0.0
        self.zoom = 0.0
        self.streaming = True
        self.quit = False
        self.faults: list[dict] = []        # one-sample faults, sent in place of the next sample

    def msg(self) -> dict:
        hand = np.eye(4)
        hand[:3, 3] = self.hand.now()
        return {"type": "xr", "t": time.time() * 1e3, "head": xr_matrix(float(self.head_yaw.now())),
                "left": {"pose": xr_matrix(p=(-0.25, 1.1, -0.35)), "trigger": 0.0, "squeeze": self.deadman,
                         "buttons": [0.0, self.deadman, 0, 0, 0, 0], "axes": [0, 0, 0, self.zoom]},
                "right": {"pose": P.column_major(hand), "trigger": 0.0, "squeeze": self.clutch,
                          "buttons": [0.0, self.clutch, 0, 0, self.a, self.b], "axes": [0, 0, 0, 0]}}

    def command(self, c: dict) -> None:
        if "hand" in c:
            p = self.hand.now()
            self.hand = Ramp(p, p + np.asarray(c["hand"], float), float(c.get("seconds", 0.0)))
        if "head_yaw" in c:
            self.head_yaw = Ramp(self.head_yaw.now(), float(c["head_yaw"]), float(c.get("seconds", 0.0)))
        for key in ("clutch", "deadman", "a", "b", "zoom"):
            if key in c:
                setattr(self, key, float(c[key]))
        if "nan" in c or "glitch" in c:
            self.faults.append(c)
        if "streaming" in c:
            self.streaming = bool(c["streaming"])
        self.quit = bool(c.get("quit", False))


async def main(port: int, token: str) -> None:
    op = Operator()
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def commands():
        n = 0
        while not op.quit:
            line = await reader.readline()
            if not line:
                op.quit = True
                break
            op.command(json.loads(line))
            n += 1
            print(f"ack {n}", flush=True)

    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"wss://127.0.0.1:{port}/ws", ssl=ctx, headers={"Origin": f"https://127.0.0.1:{port}"})
        await ws.send_str(json.dumps({"type": "hello", "token": token}))
        welcome = await ws.receive(timeout=10)
        assert json.loads(welcome.data)["type"] == "welcome", welcome
        print("welcome", flush=True)
        cmd_task = asyncio.create_task(commands())
        drain = asyncio.create_task(ws.receive())        # status messages: read and dropped
        period = 1.0 / RATE_HZ
        next_t = time.monotonic()
        last_sent = None
        while not op.quit:
            if drain.done():
                drain = asyncio.create_task(ws.receive())
            if op.streaming:
                msg = op.msg()
                if op.faults:
                    fault = op.faults.pop(0)
                    pose = msg["right"]["pose"]
                    if "nan" in fault:
                        pose[12] = float("nan")          # json.dumps writes the NaN literal a buggy page would
                    else:
                        for i, d in enumerate(fault["glitch"]):
                            pose[12 + i] += float(d)
                await ws.send_str(json.dumps(msg))
                sent = time.monotonic()
                if last_sent is not None and sent - last_sent > GAP_REPORT_S:     # this process stalled
                    print(f"send gap {1e3 * (sent - last_sent):.0f} ms", flush=True)
                last_sent = sent
            else:
                if last_sent is not None:        # the link's real end: the fault suite's fault time
                    print(f"{STOPPED} {last_sent:.6f}", flush=True)
                last_sent = None                 # a pause asked for is not a stall
            next_t += period
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
        cmd_task.cancel()
        drain.cancel()
        await ws.close()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
    except Exception:                          # noqa: BLE001 - said, then gone
        # exit now: after its console was killed, an operator that only printed its traceback
        # stayed alive (interpreter exit waiting on a thread), so the fault suite never started
        # another one and the restarted console heard no operator (console_sigkill, second round)
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
