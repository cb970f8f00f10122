"""Console server security and protocol (teleop/server.py), in-process over real TLS sockets.

The server runs on an ephemeral loopback port with a certificate made by
`teleop.tls`; clients are real aiohttp HTTPS/WebSocket clients.  What the
server would publish is recorded by the sink and checked: nothing on a bad
token, only valid samples after a 10,000-message fuzz run.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
import time

import aiohttp
import numpy as np
import pytest

from surgbot import area_path
from surgbot.teleop import protocol as P
from surgbot.teleop import tls
from surgbot.teleop.config import ConsoleConfig
from surgbot.teleop.server import CLOSE_OPERATOR_TAKEN, CLOSE_UNAUTHORIZED, ConsoleServer
from surgbot.teleop.url import served_port, url_line, wait_for_served_port

pytestmark = pytest.mark.unit

TOKEN = "s3cret-token-for-tests"
WEB = area_path("teleop") / "web"


class Sink:
    def __init__(self):
        self.samples: list[P.XrSample] = []
        self.lost: list[str] = []
        self.records: list[str] = []

    def on_record(self, action):
        self.records.append(action)

    def on_xr(self, sample, t_recv):
        self.samples.append(sample)

    def on_link_lost(self, reason):
        self.lost.append(reason)
        self.lost_at = time.time()          # the server's clock (time.time) decides the timeout


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    c, k, created = tls.ensure_certificate(directory=d)
    assert created and (d / tls.KEY_NAME).stat().st_mode & 0o077 == 0
    assert tls.ensure_certificate(directory=d) == (c, k, False)          # reused, not recreated
    return c, k


def test_certificate_names_loopback_and_fingerprint_matches(cert):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    c = x509.load_pem_x509_certificate(cert[0].read_bytes())
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    fp = tls.fingerprint(cert[0])
    assert fp == ":".join(f"{b:02X}" for b in c.fingerprint(hashes.SHA256())) and len(fp.split(":")) == 32
    with pytest.raises(ValueError):
        tls.ensure_certificate(cert="/nonexistent.pem", key="")


def client_ssl():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def run(cert, body, **cfg_over):
    """Start a server (port 0), run `body(server, sink, base_url)`, stop it."""
    async def main():
        sink = Sink()
        cfg = ConsoleConfig(port=0, **cfg_over)
        server = ConsoleServer(cfg, TOKEN, sink, WEB, tls.server_context(*cert))
        port = await server.start()
        try:
            return await body(server, sink, f"https://127.0.0.1:{port}")
        finally:
            await server.stop()
    return asyncio.run(main())


async def connect(session, base, token=TOKEN, role="operator", origin=None, hello=True):
    ws = await session.ws_connect(base.replace("https", "wss") + "/ws", ssl=client_ssl(),
                                  headers={"Origin": origin or base}, max_msg_size=0)
    if hello:
        await ws.send_str(json.dumps({"type": "hello", "token": token, "role": role}))
    return ws


async def welcome(ws):
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


def xr_msg(t=1.0, dx=0.0, squeeze=1.0):
    m = np.eye(4)
    m[:3, 3] = (dx, 1.2, -0.3)
    return {"type": "xr", "t": t, "head": P.column_major(np.eye(4)),
            "right": {"pose": P.column_major(m), "trigger": 0.0, "squeeze": squeeze}}


def test_page_over_https_with_security_headers_and_no_external_urls(cert):
    async def body(server, sink, base):
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/", ssl=client_ssl()) as r:
                assert r.status == 200
                html = await r.text()
                assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
                assert r.headers["X-Content-Type-Options"] == "nosniff"
            for name in ("console.js", "console.css"):
                async with s.get(f"{base}/static/{name}", ssl=client_ssl()) as r:
                    assert r.status == 200, name
                    text = await r.text()
                    assert "http://" not in text and "https://" not in text     # nothing from elsewhere
            async with s.get(base + "/static/..%2Fserver.py", ssl=client_ssl()) as r:
                assert r.status == 404
            async with s.get(base + "/", ssl=client_ssl(), headers={"Host": "evil.example:443"}) as r:
                assert r.status == 421                                          # DNS rebinding
        return html
    html = run(cert, body)
    assert "https://" not in html and "http://" not in html


def test_plain_http_gets_no_answer(cert):
    async def body(server, sink, base):
        url = base.replace("https", "http")
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.ClientError):
                async with s.get(url + "/", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    await r.read()
    run(cert, body)


def test_listens_on_loopback_only_by_default(cert):
    async def body(server, sink, base):
        return server._runner.addresses
    addrs = run(cert, body)
    assert addrs and all(a[0] == "127.0.0.1" for a in addrs), addrs
    # an address of this machine that is not loopback (if it has one) is refused
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.connect(("192.0.2.1", 9))                 # TEST-NET: no packet is sent for a UDP connect
            own = u.getsockname()[0]
    except OSError:
        own = None
    if own and not own.startswith("127."):
        port = addrs[0][1]

        async def probe(server, sink, base):
            p = server.port
            with pytest.raises(OSError):
                socket.create_connection((own, p), timeout=2).close()
        run(cert, probe)
        assert port


@pytest.mark.parametrize("token, hello", [("wrong", True), ("", True), (TOKEN + "x", True), (TOKEN, False)])
def test_bad_or_missing_token_closes_4401_and_publishes_nothing(cert, token, hello):
    async def body(server, sink, base):
        async with aiohttp.ClientSession() as s:
            ws = await connect(s, base, token=token, hello=hello)
            await ws.send_str(json.dumps(xr_msg()))       # sent right after: must not be published
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_UNAUTHORIZED
        assert sink.samples == [] and server.rejected["auth_failed"] == 1
    run(cert, body, hello_timeout_s=0.5)


def test_foreign_origin_refused(cert):
    async def body(server, sink, base):
        async with aiohttp.ClientSession() as s:
            for origin in ("https://evil.example", "http://127.0.0.1:1", base.replace("https", "http")):
                with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                    await connect(s, base, origin=origin)
                assert e.value.status == 403
        assert server.rejected["bad_origin"] == 3 and sink.samples == []
    run(cert, body)


def test_one_operator_viewers_watch(cert):
    async def body(server, sink, base):
        async with aiohttp.ClientSession() as s:
            op = await connect(s, base)
            assert (await welcome(op))["role"] == "operator"
            second = await connect(s, base)
            msg = await second.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_OPERATOR_TAKEN
            assert "another operator" in (msg.extra or "")
            viewer = await connect(s, base, role="viewer")
            assert (await welcome(viewer))["role"] == "viewer"
            await viewer.send_str(json.dumps(xr_msg()))      # a viewer cannot drive
            await op.send_str(json.dumps(xr_msg(t=2.0)))
            for _ in range(50):
                if sink.samples and server.rejected["not_operator"]:
                    break
                await asyncio.sleep(0.02)
            assert [x.t_ms for x in sink.samples] == [2.0] and server.rejected["not_operator"] == 1
            # the operator leaves: the link is lost at once and a new operator may connect
            await op.close()
            await asyncio.sleep(0.1)
            assert sink.lost and "disconnected" in sink.lost[-1]
            again = await connect(s, base)
            assert (await welcome(again))["role"] == "operator"
    run(cert, body)


def fuzz_messages(n: int, rng: random.Random):
    """(kind, payload) of n random malformed messages; payload is str or bytes."""
    good = json.dumps(xr_msg())
    kinds = ["bad_json", "huge", "nested", "nonfinite", "bigint", "shape", "type", "binary", "valid", "truncated",
             "mutant"]
    for _ in range(n):
        k = rng.choice(kinds)
        if k == "bad_json":
            yield k, "".join(rng.choice('{}[]":,ab01.-eE ') for _ in range(rng.randint(1, 200)))
        elif k == "huge":
            yield k, '{"type": "xr", "pad": "' + "x" * rng.randint(20_000, 500_000) + '"}'
        elif k == "nested":
            d = rng.randint(9, 5000)
            yield k, "[" * d + "]" * d if rng.random() < 0.5 else '{"a":' * d + "1" + "}" * d
        elif k == "nonfinite":
            m = xr_msg()
            m["head"][rng.randrange(16)] = float(rng.choice(["nan", "inf", "-inf"]))
            yield k, json.dumps(m)                    # Python writes NaN / Infinity literals
        elif k == "bigint":                           # JSON allows it; no float holds it
            m = xr_msg()
            where = rng.choice(["t", "head", "trigger"])
            big = rng.choice([1, -1]) * 10 ** rng.randint(309, 2000)
            if where == "head":
                m["head"][rng.randrange(16)] = big
            elif where == "trigger":
                m["right"]["trigger"] = big
            else:
                m["t"] = big
            yield k, json.dumps(m)
        elif k == "shape":
            m = xr_msg()
            m["head"] = m["head"][: rng.randrange(16)]
            yield k, json.dumps(m)
        elif k == "type":
            m = xr_msg()
            key = rng.choice(["t", "head", "right"])
            m[key] = rng.choice([None, "x", [], {}, True, 1e308, [[1]]])
            yield k, json.dumps(m)
        elif k == "binary":
            yield k, rng.randbytes(rng.randint(1, 3000))
        elif k == "truncated":
            yield k, good[: rng.randrange(1, len(good))]
        elif k == "mutant":
            i = rng.randrange(len(good))
            yield k, good[:i] + rng.choice("\x00\"{}[],:") + good[i + 1:]
        else:
            yield k, good


def test_fuzz_10000_messages_server_stays_up_publishes_only_valid_counts_every_rejection(cert):
    rng = random.Random(12)
    msgs = list(fuzz_messages(10_000, rng))

    async def body(server, sink, base):
        async with aiohttp.ClientSession() as s:
            ws = await connect(s, base)
            await welcome(ws)
            for _, payload in msgs:
                if isinstance(payload, bytes):
                    await ws.send_bytes(payload)
                else:
                    await ws.send_str(payload)
            # the socket is still served: a valid message after the storm is published
            await ws.send_str(json.dumps(xr_msg(t=99.0)))
            end = time.monotonic() + 60
            while time.monotonic() < end and not (sink.samples and sink.samples[-1].t_ms == 99.0):
                await asyncio.sleep(0.05)
            assert not ws.closed
        xr = server.xr
        return xr.accepted, dict(server.rejected), list(sink.samples), xr.coalesced + xr.dropped_stale

    accepted, rejected, samples, coalesced = run(cert, body, max_message_rate_hz=1e6, rate_burst=1_000_000)
    assert samples[-1].t_ms == 99.0
    print(f"\nfuzz: accepted {accepted} ({coalesced} superseded or stale before publishing), "
          f"rejected {sum(rejected.values())}: {rejected}")
    assert accepted + sum(rejected.values()) == len(msgs) + 1            # every message accounted for
    assert rejected.get("auth_failed", 0) == 0
    # everything published is a valid sample: finite rigid poses, values in range
    for s in samples:
        for hand in (s.left, s.right):
            poses = [s.head] + ([hand.pose] if hand is not None else [])
            for T in poses:
                R = T[:3, :3]
                assert np.all(np.isfinite(T)) and np.allclose(R.T @ R, np.eye(3), atol=1e-3)
                assert abs(np.linalg.det(R) - 1) < 1e-3
            if hand is not None:
                assert 0.0 <= hand.squeeze <= 1.0 and 0.0 <= hand.trigger <= 1.0
    assert len(samples) + coalesced == accepted          # newest-only: superseded (or stale) samples are counted
    assert accepted >= sum(1 for k, _ in msgs if k == "valid") + 1       # the valid ones all got through


def test_rate_limit_drops_and_counts(cert):
    async def body(server, sink, base):
        async with aiohttp.ClientSession() as s:
            ws = await connect(s, base)
            await welcome(ws)
            for i in range(300):
                await ws.send_str(json.dumps(xr_msg(t=float(i))))
            end = time.monotonic() + 10
            while time.monotonic() < end and server.xr.accepted + server.rejected["rate_limited"] < 300:
                await asyncio.sleep(0.02)
        return server.xr.accepted, server.rejected["rate_limited"]
    accepted, limited = run(cert, body, max_message_rate_hz=10.0, rate_burst=50)
    assert accepted + limited == 300 and 50 <= accepted < 100 and limited > 200


def test_video_latest_only_header_ack_and_status(cert):
    async def body(server, sink, base):
        async with aiohttp.ClientSession() as s:
            ws = await connect(s, base, role="viewer")
            await welcome(ws)
            now_ms = time.time() * 1e3
            for i in range(10):                               # a burst: only the newest may follow the first
                server.publish_frame(b"\xff\xd8frame%d" % i, now_ms - 20 + i)
            got = []
            statuses = []
            end = time.monotonic() + 5
            while time.monotonic() < end and len(got) < 2:
                msg = await ws.receive(timeout=5)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    seq, cap, jpeg = P.unpack_frame(msg.data)
                    got.append((seq, cap, jpeg))
                    await ws.send_str(json.dumps({"type": "ack", "seq": seq}))
                else:
                    statuses.append(json.loads(msg.data))
            while not statuses:
                statuses.append(json.loads((await ws.receive(timeout=5)).data))
            await asyncio.sleep(0.3)
            status = server.status()
        return got, statuses, status
    got, statuses, status = run(cert, body)
    seqs = [g[0] for g in got]
    assert seqs[-1] == 9 and len(seqs) <= 2                         # never the queued middle frames
    assert got[-1][2] == b"\xff\xd8frame9"
    assert statuses[0]["type"] == "status" and "rejected" in statuses[0]
    assert status["glass_to_glass_ms"] is not None and status["glass_to_glass_ms"] >= 0
    assert status["video_dropped"] >= 7


def test_link_lost_after_timeout(cert):
    async def body(server, sink, base):
        async with aiohttp.ClientSession() as s:
            ws = await connect(s, base)
            await welcome(ws)
            for i in range(10):
                await ws.send_str(json.dumps(xr_msg(t=float(i))))
                await asyncio.sleep(0.01)
            t_last = time.monotonic()
            while not sink.lost and time.monotonic() - t_last < 2:
                await asyncio.sleep(0.005)
            assert sink.lost and "no valid xr" in sink.lost[0]
            waited = sink.lost_at - server.xr.last_xr_t                    # since the last valid sample arrived
            assert waited >= 0.2                                        # never before the timeout
            assert not ws.closed                                        # a lost link is not a kick
    run(cert, body)


def test_link_lost_again_after_it_came_back(cert):
    """The watchdog sleeps while the link is down and wakes on the next sample: a second loss is
    declared one timeout after the samples stop again, never before."""
    async def body(server, sink, base):
        async with aiohttp.ClientSession() as s:
            ws = await connect(s, base)
            await welcome(ws)
            for round_ in range(2):
                for i in range(5):
                    await ws.send_str(json.dumps(xr_msg(t=float(10 * round_ + i + 1))))
                    await asyncio.sleep(0.01)
                end = time.monotonic() + 2
                while len(sink.lost) <= round_ and time.monotonic() < end:
                    await asyncio.sleep(0.005)
                assert len(sink.lost) == round_ + 1, sink.lost
                assert sink.lost_at - server.xr.last_xr_t >= 0.2
                assert not server.xr.up
    run(cert, body)


def test_a_burst_of_poses_publishes_the_newest_not_a_backlog(cert):
    async def body(server, sink, base):
        async with aiohttp.ClientSession() as s:
            ws = await connect(s, base)
            await welcome(ws)
            for i in range(200):
                await ws.send_str(json.dumps(xr_msg(t=float(i + 1))))
            end = time.monotonic() + 10
            while time.monotonic() < end and not (sink.samples and sink.samples[-1].t_ms == 200.0):
                await asyncio.sleep(0.01)
        return server.xr.accepted, server.xr.coalesced, [x.t_ms for x in sink.samples]
    accepted, coalesced, published = run(cert, body, max_message_rate_hz=1e6, rate_burst=1_000_000)
    assert accepted == 200 and published[-1] == 200.0
    assert published == sorted(published) and len(published) + coalesced == 200


def test_record_messages_reach_the_sink_from_the_operator_only(cert):
    async def body(server, sink, base):
        async with aiohttp.ClientSession() as s:
            op = await connect(s, base)
            await welcome(op)
            viewer = await connect(s, base, role="viewer")
            await welcome(viewer)
            await viewer.send_str(json.dumps({"type": "record", "action": "start"}))     # a viewer cannot record
            for text in ('{"type": "record", "action": "erase"}', '{"type": "record"}',
                         '{"type": "record", "action": "stop", "x": 1}', '{"type": "record", "action": NaN}'):
                await op.send_str(text)
            for action in ("start", "discard", "start", "stop"):
                await op.send_str(json.dumps({"type": "record", "action": action}))
            end = time.monotonic() + 10
            while time.monotonic() < end and len(sink.records) < 4:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
        return list(sink.records), dict(server.rejected)
    records, rejected = run(cert, body)
    assert records == ["start", "discard", "start", "stop"]
    assert rejected == {"not_operator": 1, "bad_type": 2, "bad_shape": 1, "non_finite": 1}


def test_the_url_line_gives_its_port_back_for_every_host_form():
    """`--port 0` launchers (tests, the fault harness, the bench) read the bound port from this line."""
    for host in ("127.0.0.1", "::1", "surgbot.local", "<this machine's address>"):
        line = url_line(host, 40123, "t0k3n")
        assert line.startswith("teleop console: https://") and line.endswith(":40123/#token=t0k3n")
        assert served_port(f"starting...\n{line}\n  certificate /x.pem (created)\n") == 40123
    assert url_line("::1", 8443, "t") == "teleop console: https://[::1]:8443/#token=t"
    # nothing printed yet, or another program's URL: no port
    assert served_port("") is None
    assert served_port("see https://127.0.0.1:9999/ for help") is None


def test_waiting_for_the_url_line_returns_its_port_or_says_why_not():
    """The one start-up wait of every `--port 0` launcher: the port once the line is out; the
    console's own output when it exits first or prints no line in time."""
    outputs = iter(["", "starting...\n", "starting...\n" + url_line("127.0.0.1", 40123, "t") + "\n"])
    last = [""]

    def read():
        last[0] = next(outputs, last[0])
        return last[0]

    assert wait_for_served_port(read, lambda: True, timeout_s=10.0) == 40123
    with pytest.raises(RuntimeError, match="exited before printing its URL:\n.*address already in use"):
        wait_for_served_port(lambda: "OSError: address already in use", lambda: False, timeout_s=10.0)
    with pytest.raises(RuntimeError, match="printed no URL in 0 s:\n.*importing"):
        wait_for_served_port(lambda: "importing", lambda: True, timeout_s=0.0)
