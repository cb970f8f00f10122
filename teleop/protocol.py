"""The console's WebSocket protocol (contract section 6): parsing, validation, frames, axes.

ROS-free and strict: a client message is either a fully valid `hello`,
`xr`, `ack` or `record`, or it is rejected with a short reason that the server counts
(`Rejected.reason` is the counter name).  Nothing partially valid gets
through: a pose must be a finite rigid transform, every number finite and in
range, every list within its length.

Poses arrive as 4x4 column-major matrices in the OpenXR reference space
(x right, y up, z back, metres).  The ROS side publishes them in the
operator's `world`-style frame (x forward, y left, z up), the axes the holder
and mapper use: x_robot = -z_xr, y_robot = -x_xr, z_robot = y_xr
(../shared/FACTS.md), applied to both the position and the body axes.

Joy layout of `/teleop/buttons` (one message per `xr` sample, same stamp as
the poses; the holder's `deadman_button` is index 0):
buttons: 0 left squeeze (deadman), 1 right squeeze (clutch), 2 A, 3 B
(right hand), 4 X, 5 Y (left hand), 6 left trigger, 7 right trigger,
8 left stick press, 9 right stick press (pressed = value > 0.5);
axes: 0 left trigger, 1 right trigger, 2 left squeeze, 3 right squeeze,
4/5 left stick x/y, 6/7 right stick x/y (xr-standard: stick forward = -1).
X and Y are published like the others; the page also reads them itself: X
held for a second sends `record` start (stop when recording), Y held
discards (`teleop/web/console.js`), so a quick press never records.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field

import numpy as np

# ------------------------------------------------------------------ limits
MAX_BUTTONS = 8                 # xr-standard gamepads have <= 7 buttons
MAX_AXES = 4
MAX_POSITION_M = 10.0           # a tracked pose further than this from the origin is not a person
RIGID_TOL = 1e-3                # |R^T R - I| and |det R - 1| tolerance (float32 matrices from the browser)
MAX_TOKEN_CHARS = 256
MAX_OPENINGS = 32               # brackets in one message (a valid one has 9): deep JSON is not parsed at all
SIDES = ("left", "right")
SOURCES = ("controller", "hand")
ROLES = ("operator", "viewer")
RECORD_ACTIONS = ("start", "stop", "discard")     # stop keeps the episode (contract section 10 services)

# xr-standard gamepad mapping (WebXR Gamepads Module)
XR_TRIGGER, XR_SQUEEZE, XR_TOUCHPAD, XR_STICK_PRESS, XR_A, XR_B = range(6)
XR_STICK_X, XR_STICK_Y = 2, 3

# /teleop/buttons layout (see module docstring)
BTN_DEADMAN, BTN_CLUTCH, BTN_A, BTN_B, BTN_X, BTN_Y, BTN_LTRIG, BTN_RTRIG, BTN_LSTICK, BTN_RSTICK = range(10)
AX_LTRIG, AX_RTRIG, AX_LSQUEEZE, AX_RSQUEEZE, AX_LX, AX_LY, AX_RX, AX_RY = range(8)
N_BUTTONS, N_AXES = 10, 8
PRESSED = 0.5

# OpenXR axes -> operator frame (x forward, y left, z up)
XR_TO_ROBOT = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

# binary video frame: magic, sequence number, capture stamp (ms since the epoch), then the JPEG
FRAME_MAGIC = b"SBJ1"
FRAME_HEADER = struct.Struct("<4sId")
FRAME_HEADER_SIZE = FRAME_HEADER.size      # 16 bytes


class Rejected(ValueError):
    """A client message that is not valid; `reason` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Hand:
    """One side of an `xr` message, already in the operator frame."""

    pose: np.ndarray                 # 4x4, operator frame
    trigger: float
    squeeze: float
    buttons: tuple[float, ...]
    axes: tuple[float, ...]
    source: str = "controller"

    def button(self, i: int) -> float:
        return self.buttons[i] if i < len(self.buttons) else 0.0

    def axis(self, i: int) -> float:
        return self.axes[i] if i < len(self.axes) else 0.0


@dataclass(frozen=True)
class XrSample:
    """A valid `xr` message: page time (ms), head and optional hands, all in the operator frame."""

    t_ms: float
    head: np.ndarray
    left: Hand | None = None
    right: Hand | None = None
    extra: dict = field(default_factory=dict)

    def joy(self) -> tuple[list[int], list[float]]:
        """(buttons, axes) of `/teleop/buttons` (layout in the module docstring)."""
        lt = self.left
        rt = self.right
        axes = [0.0] * N_AXES
        if lt is not None:
            axes[AX_LTRIG], axes[AX_LSQUEEZE] = lt.trigger, lt.squeeze
            axes[AX_LX], axes[AX_LY] = lt.axis(XR_STICK_X), lt.axis(XR_STICK_Y)
        if rt is not None:
            axes[AX_RTRIG], axes[AX_RSQUEEZE] = rt.trigger, rt.squeeze
            axes[AX_RX], axes[AX_RY] = rt.axis(XR_STICK_X), rt.axis(XR_STICK_Y)
        b = [0] * N_BUTTONS

        def on(v: float) -> int:
            return 1 if v > PRESSED else 0
        if lt is not None:
            b[BTN_DEADMAN] = on(lt.squeeze)
            b[BTN_X], b[BTN_Y] = on(lt.button(XR_A)), on(lt.button(XR_B))
            b[BTN_LTRIG], b[BTN_LSTICK] = on(lt.trigger), on(lt.button(XR_STICK_PRESS))
        if rt is not None:
            b[BTN_CLUTCH] = on(rt.squeeze)
            b[BTN_A], b[BTN_B] = on(rt.button(XR_A)), on(rt.button(XR_B))
            b[BTN_RTRIG], b[BTN_RSTICK] = on(rt.trigger), on(rt.button(XR_STICK_PRESS))
        return b, axes


# ------------------------------------------------------------------ parsing
def _nesting_ok(text: str) -> bool:
    """At most MAX_OPENINGS brackets: bounds the nesting depth before `json.loads` sees the text.

    A valid message opens 9; counting (in C) is ~100x cheaper than tracking the depth in Python,
    and a deeply nested document needs as many openings as levels.
    """
    return text.count("[") + text.count("{") <= MAX_OPENINGS


def _reject_constant(name: str):
    raise Rejected("non_finite", f"JSON constant {name}")


# one decoder: `json.loads` with a keyword argument builds a new decoder (and its scanner) per call
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def loads(text: str) -> dict:
    """JSON object of a client text message; NaN/Infinity literals, deep nesting and non-objects rejected."""
    if not _nesting_ok(text):
        raise Rejected("too_deep")
    try:
        obj = _DECODER.decode(text)
    except Rejected:
        raise
    except (ValueError, RecursionError) as exc:
        raise Rejected("bad_json", str(exc)[:80]) from None
    if not isinstance(obj, dict):
        raise Rejected("bad_shape", f"top level is {type(obj).__name__}, expected an object")
    return obj


def _number(v, what: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Rejected("bad_type", f"{what} is {type(v).__name__}, expected a number")
    try:
        x = float(v)
    except OverflowError:               # an integer literal of 309+ digits: JSON allows it, a float cannot
        raise Rejected("out_of_range", f"{what} is an integer beyond a float's range") from None
    if not math.isfinite(x):
        raise Rejected("non_finite", what)
    if not lo <= x <= hi:
        raise Rejected("out_of_range", f"{what}={x:.4g} outside [{lo}, {hi}]")
    return x


def _numbers(v, what: str, max_len: int, lo: float, hi: float) -> tuple[float, ...]:
    if not isinstance(v, list):
        raise Rejected("bad_type", f"{what} is {type(v).__name__}, expected a list")
    if len(v) > max_len:
        raise Rejected("bad_shape", f"{what} has {len(v)} entries, at most {max_len}")
    # the common case checked without building a name per element; a failure is named below
    try:
        values = tuple(float(x) if type(x) in (int, float, bool) else x for x in v)   # JSON true/false: 1, 0
        if all(type(x) is float and lo <= x <= hi for x in values):   # NaN fails the comparison too
            return values
    except OverflowError:
        pass
    return tuple(_number(float(x) if type(x) is bool else x, f"{what}[{i}]", lo, hi) for i, x in enumerate(v))


def rigid_from_column_major(values, what: str) -> np.ndarray:
    """4x4 from 16 column-major numbers; rejected unless a finite rigid transform within MAX_POSITION_M."""
    if not isinstance(values, list) or len(values) != 16:
        raise Rejected("bad_shape", f"{what} must be 16 numbers")
    for x in values:
        if type(x) not in (int, float):                  # exact types: json's true/false are not numbers
            raise Rejected("bad_type", f"{what} holds a {type(x).__name__}")
    try:
        finite = all(map(math.isfinite, values))
    except OverflowError:               # an integer literal beyond a float's range
        raise Rejected("out_of_range", f"{what} holds an integer beyond a float's range") from None
    if not finite:
        raise Rejected("non_finite", what)
    # plain scalar arithmetic on the columns a, b, c of R: for one 3x3 it is ~10x faster than
    # numpy's small-array calls (this runs for 3 poses of every operator sample)
    a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, px, py, pz, w = values
    tol = RIGID_TOL
    if (abs(a0 * a0 + a1 * a1 + a2 * a2 - 1.0) > tol or abs(b0 * b0 + b1 * b1 + b2 * b2 - 1.0) > tol
            or abs(c0 * c0 + c1 * c1 + c2 * c2 - 1.0) > tol or abs(a0 * b0 + a1 * b1 + a2 * b2) > tol
            or abs(a0 * c0 + a1 * c1 + a2 * c2) > tol or abs(b0 * c0 + b1 * c1 + b2 * c2) > tol
            or abs(a3) > tol or abs(b3) > tol or abs(c3) > tol or abs(w - 1.0) > tol
            or abs(a0 * (b1 * c2 - b2 * c1) + a1 * (b2 * c0 - b0 * c2) + a2 * (b0 * c1 - b1 * c0) - 1.0) > tol):
        raise Rejected("not_rigid", what)      # not orthonormal, a mirror, or a bottom row other than 0 0 0 1
    if math.sqrt(px * px + py * py + pz * pz) > MAX_POSITION_M:
        raise Rejected("out_of_range", f"{what} position beyond {MAX_POSITION_M} m")
    return np.array(values, dtype=float).reshape(4, 4).T


_XR_TO_ROBOT_4 = np.eye(4)
_XR_TO_ROBOT_4[:3, :3] = XR_TO_ROBOT
_XR_TO_ROBOT_4_T = _XR_TO_ROBOT_4.T.copy()


def xr_to_robot(T_xr: np.ndarray) -> np.ndarray:
    """A pose in the OpenXR space -> the operator frame (x forward, y left, z up), body axes re-axed too."""
    return _XR_TO_ROBOT_4 @ T_xr @ _XR_TO_ROBOT_4_T


def column_major(T: np.ndarray) -> list[float]:
    """16 column-major numbers of a 4x4 (what the page sends)."""
    return [float(v) for v in np.asarray(T, float).T.reshape(-1)]


_HAND_KEYS = {"pose", "trigger", "squeeze", "buttons", "axes", "source"}
_XR_KEYS = {"type", "t", "head", "left", "right"}


def _hand(obj, side: str) -> Hand | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise Rejected("bad_type", f"{side} is {type(obj).__name__}, expected an object")
    unknown = set(obj) - _HAND_KEYS
    if unknown:
        raise Rejected("bad_shape", f"{side}: unknown key(s) {sorted(unknown)[:3]}")
    if "pose" not in obj:
        raise Rejected("bad_shape", f"{side}.pose missing")
    source = obj.get("source", "controller")
    if source not in SOURCES:
        raise Rejected("bad_type", f"{side}.source must be one of {SOURCES}")
    return Hand(
        pose=xr_to_robot(rigid_from_column_major(obj["pose"], f"{side}.pose")),
        trigger=_number(obj.get("trigger", 0.0), f"{side}.trigger", 0.0, 1.0),
        squeeze=_number(obj.get("squeeze", 0.0), f"{side}.squeeze", 0.0, 1.0),
        buttons=_numbers(obj.get("buttons", []), f"{side}.buttons", MAX_BUTTONS, 0.0, 1.0),
        axes=_numbers(obj.get("axes", []), f"{side}.axes", MAX_AXES, -1.0, 1.0),
        source=source)


def parse_xr(obj: dict) -> XrSample:
    unknown = set(obj) - _XR_KEYS
    if unknown:
        raise Rejected("bad_shape", f"xr: unknown key(s) {sorted(unknown)[:3]}")
    if "head" not in obj or "t" not in obj:
        raise Rejected("bad_shape", "xr needs t and head")
    return XrSample(t_ms=_number(obj["t"], "t", 0.0, 1e15),
                    head=xr_to_robot(rigid_from_column_major(obj["head"], "head")),
                    left=_hand(obj.get("left"), "left"), right=_hand(obj.get("right"), "right"))


def parse_ack(obj: dict) -> int:
    if set(obj) - {"type", "seq"}:
        raise Rejected("bad_shape", "ack takes only seq")
    seq = obj.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2 ** 32:
        raise Rejected("bad_type", "ack.seq must be an unsigned 32-bit integer")
    return seq


def parse_hello(obj: dict) -> tuple[str, str]:
    """(token, role) of a hello; the token is compared by the server, never here."""
    if set(obj) - {"type", "token", "role"}:
        raise Rejected("bad_shape", "hello takes token and role")
    token = obj.get("token")
    role = obj.get("role", "operator")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise Rejected("bad_token")
    if role not in ROLES:
        raise Rejected("bad_type", f"role must be one of {ROLES}")
    return token, role


def parse_record(obj: dict) -> str:
    """The action of a `record` message: start, stop (keep the episode) or discard."""
    if set(obj) - {"type", "action"}:
        raise Rejected("bad_shape", "record takes only action")
    action = obj.get("action")
    if not isinstance(action, str) or action not in RECORD_ACTIONS:
        raise Rejected("bad_type", f"record.action must be one of {RECORD_ACTIONS}")
    return action


# ------------------------------------------------------------------ video frames
def pack_frame(seq: int, capture_ms: float, jpeg: bytes) -> bytes:
    return FRAME_HEADER.pack(FRAME_MAGIC, seq & 0xFFFFFFFF, float(capture_ms)) + jpeg


def unpack_frame(data: bytes) -> tuple[int, float, bytes]:
    if len(data) < FRAME_HEADER_SIZE:
        raise ValueError("frame shorter than its header")
    magic, seq, capture_ms = FRAME_HEADER.unpack_from(data)
    if magic != FRAME_MAGIC:
        raise ValueError(f"bad frame magic {magic!r}")
    return seq, capture_ms, data[FRAME_HEADER_SIZE:]
