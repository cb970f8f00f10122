"""Unitree G1 DDS link: channel setup, raw LowCmd_/LowState_ readers and writers, the motion switcher.

The wire codecs and the CRC (numpy, no DDS) are `surgbot.hw.unitree_codec`:
the readers and writers here move their bytes.

DDS on `lo`: the loopback interface has no MULTICAST flag, and CycloneDDS
then disables multicast and discovers peers over unicast on 127.0.0.1 by
itself (logged as "selected interface lo is not multicast-capable").  That
works between processes on one host, so no `CYCLONEDDS_URI` is needed; a
custom one (peers / AllowMulticast) can still be given by the user and is
honoured because the SDK's per-domain config only names the interface.

The cyclonedds / unitree_sdk2py imports sit in the functions that open DDS
or talk to the SDK: importing cyclonedds loads its C library.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from surgbot import contract

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------
# Channel setup

_init_lock = threading.Lock()
_initialized: tuple[int, str] | None = None


def init_channel(domain: int, interface: str | None = "lo") -> None:
    """`ChannelFactoryInitialize` once per process (the SDK's factory is a singleton).

    A second call with another domain is an error: one process talks to one
    robot.
    """
    global _initialized
    from unitree_sdk2py.core.channel import ChannelFactoryInitialize
    with _init_lock:
        if _initialized is not None:
            if _initialized[0] != int(domain):
                raise RuntimeError(f"unitree DDS already initialised on domain {_initialized[0]}, "
                                   f"cannot switch to {domain} in the same process")
            return
        ChannelFactoryInitialize(int(domain), interface or None)
        _initialized = (int(domain), interface or "")


_participant = None


def participant():
    """The process's DomainParticipant on the initialised G1 domain (raw readers/writers).

    One per process, like the SDK's own factory: participants created and
    dropped per reader leave listener threads calling into freed objects.
    """
    global _participant
    from cyclonedds.domain import DomainParticipant
    with _init_lock:
        if _initialized is None:
            raise RuntimeError("init_channel() first")
        if _participant is None:
            _participant = DomainParticipant(_initialized[0])
        return _participant


class RawWriter:
    """DataWriter that sends pre-encoded XCDR1 bytes (see module doc)."""

    def __init__(self, dp, topic_name: str, idl_type):
        from cyclonedds.pub import DataWriter
        from cyclonedds.topic import Topic
        self.topic = Topic(dp, topic_name, idl_type)
        self.writer = DataWriter(dp, self.topic)
        # Pre-encoded bytes are XCDR1; a writer that negotiated XCDR2 would need
        # the SDK serializer, which we then use (slow but correct).
        self.raw_ok = self.writer._use_version_2 in (None, False)
        from cyclonedds._clayer import ddspy_write
        self._write = ddspy_write

    def write(self, cdr: bytes, sdk_sample_factory: Callable[[], object] | None = None) -> None:
        if self.raw_ok:
            ret = self._write(self.writer._ref, cdr)
            if ret < 0:
                raise RuntimeError(f"DDS write failed on {self.topic.name}: {ret}")
        elif sdk_sample_factory is not None:
            self.writer.write(sdk_sample_factory())


class RawReader:
    """DataReader that hands raw XCDR bytes (and take time) to `handler`.

    `listen=True`: a DDS listener thread calls the handler as samples arrive.
    `listen=False`: the owner calls `poll()` from its own loop (a robot's
    control tick): the samples are taken in that loop's time, so a Python
    listener thread starved of the GIL or the CPU on a loaded host cannot
    hold commands back and hand them over in a burst.
    A listening reader may be polled too (a watchdog drains it before judging
    the link): one lock keeps each take and its handler calls together, so
    the handler sees samples in the order they were taken.
    """

    def __init__(self, dp, topic_name: str, idl_type, handler: Callable[[bytes, float], None],
                 listen: bool = True):
        from cyclonedds._clayer import ddspy_take
        from cyclonedds.core import Listener
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic
        self._take = ddspy_take
        self._handler = handler
        self._lock = threading.Lock()
        self.topic = Topic(dp, topic_name, idl_type)
        listener = Listener(on_data_available=self._on_data) if listen else None
        self.reader = DataReader(dp, self.topic, listener=listener)

    def poll(self) -> int:
        """Hand every sample that has arrived to the handler; returns how many there were."""
        return self._on_data(self.reader)

    def close(self) -> None:
        """Detach the listener before the reader goes: a DDS thread must not call into a dead handler."""
        if self.reader is not None:
            self.reader.set_listener(None)
            self._handler = lambda data, t: None
            self.reader = None

    def _on_data(self, reader) -> int:
        with self._lock:
            if self.reader is None:
                return 0
            now = time.monotonic()
            ret = self._take(self.reader._ref, 32)
            if isinstance(ret, int):
                return 0
            handed = 0
            for data, info in ret:
                if info.valid_data:
                    handed += 1
                    try:
                        self._handler(data, now)
                    except Exception:  # a bad sample must not kill the DDS thread
                        log.exception("handler for %s failed", self.topic.name)
            return handed


# --------------------------------------------------------------------------
# motion_switcher RPC, served as the robot serves it

STANDING_MODE = {"form": "0", "name": "ai"}


def make_motion_switcher_server(on_check: Callable[[], dict], on_select: Callable[[str], int],
                                on_release: Callable[[], int]):
    """An SDK `rpc.server.Server` named `motion_switcher` with CheckMode/SelectMode/ReleaseMode.

    Built on unitree_sdk2py's own server classes so `MotionSwitcherClient`
    (and any program using it) talks to it unchanged.  Handlers return codes;
    CheckMode returns the JSON `{"form", "name"}` (name "" when released).
    """
    from unitree_sdk2py.comm.motion_switcher.motion_switcher_api import (
        MOTION_SWITCHER_API_ID_CHECK_MODE,
        MOTION_SWITCHER_API_ID_RELEASE_MODE,
        MOTION_SWITCHER_API_ID_SELECT_MODE,
        MOTION_SWITCHER_API_VERSION,
        MOTION_SWITCHER_SERVICE_NAME,
    )
    from unitree_sdk2py.rpc.internal import RPC_ERR_SERVER_API_PARAMETER
    from unitree_sdk2py.rpc.server import Server

    assert MOTION_SWITCHER_SERVICE_NAME == contract.MOTION_SWITCHER_SERVICE

    class MotionSwitcherServer(Server):
        def __init__(self):
            super().__init__(MOTION_SWITCHER_SERVICE_NAME)

        def Init(self):  # SDK naming
            self._RegistHandler(MOTION_SWITCHER_API_ID_CHECK_MODE, self._check, False)
            self._RegistHandler(MOTION_SWITCHER_API_ID_SELECT_MODE, self._select, False)
            self._RegistHandler(MOTION_SWITCHER_API_ID_RELEASE_MODE, self._release, False)
            self._SetApiVersion(MOTION_SWITCHER_API_VERSION)

        def _check(self, parameter: str):
            return 0, json.dumps(on_check())

        def _select(self, parameter: str):
            try:
                name = str(json.loads(parameter or "{}").get("name", ""))
            except (ValueError, AttributeError):
                return RPC_ERR_SERVER_API_PARAMETER, ""
            return on_select(name), ""

        def _release(self, parameter: str):
            return on_release(), ""

    server = MotionSwitcherServer()
    server.Init()
    return server
