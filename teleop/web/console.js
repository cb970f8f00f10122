// surgbot console page: connection (token hello), video (newest frame only, acked), status overlay,
// the immersive session (xr.js) and a desktop mode that produces the same `xr` messages from the
// keyboard, mouse and a gamepad, and the Record control (button, or X / Y held in the headset).
// Served by the console itself; nothing is loaded from elsewhere.
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const role = params.get('role') === 'viewer' ? 'viewer' : 'operator';
  const $ = (id) => document.getElementById(id);
  const RATE_WINDOW = 240;
  const HAND_SPEED_M_S = 0.1;
  const TURN_SPEED_RAD_S = 0.5;
  const EYE_HEIGHT_M = 1.6;
  const RECONNECT_MS = 1000;
  const MIN_SEND_INTERVAL_MS = 8.0;     // at most 125 messages/s on average: a 120 Hz headset's frames all pass
  const RECORD_HOLD_MS = 1000;          // X / Y held this long = Record / Discard (a quick press does nothing)
  const XR_X = 4, XR_Y = 5;             // left controller buttons (xr-standard: 4 = X, 5 = Y)

  // ------------------------------------------------------------------ token
  // The console prints a URL with #token=...: a fragment never reaches a server or a log.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) {
    sessionStorage.setItem('surgbot-token', fromHash);
    history.replaceState(null, '', location.pathname + location.search);
  }
  $('token').value = sessionStorage.getItem('surgbot-token') || '';

  const stats = {
    sent: 0, sentTimes: [], framesDrawn: 0, lastSeq: -1, ages: [], recvAges: [], decodeMs: [], acked: 0,
    status: null, closeCode: null, closeReason: '', authed: false, mode: 'idle', rttMs: null,
    recordSent: [],                // record actions this page sent (tests read it)
  };
  window.surgbot = { stats, role };

  // ------------------------------------------------------------------ socket
  let ws = null;
  let wantConnected = false;

  function connect() {
    const token = $('token').value.trim();
    sessionStorage.setItem('surgbot-token', token);
    wantConnected = true;
    ws = new WebSocket(`wss://${location.host}/ws`);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', token, role }));
    ws.onmessage = (e) => {
      if (typeof e.data === 'string') onText(JSON.parse(e.data));
      else onFrame(e.data);
    };
    ws.onclose = (e) => {
      stats.authed = false;
      stats.closeCode = e.code;
      stats.closeReason = e.reason;
      $('conn').textContent = `closed (${e.code}${e.reason ? ': ' + e.reason : ''})`;
      $('enter-vr').disabled = $('desktop').disabled = $('record').disabled = $('discard').disabled = true;
      // a refused token or a taken operator seat is not retried by itself
      if (wantConnected && e.code !== 4401 && e.code !== 4409) setTimeout(connect, RECONNECT_MS);
    };
  }

  let nextSendMs = 0;
  function send(msg) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !stats.authed) return;
    // one message per XR (or animation) frame; headsets run at 72-120 Hz, an uncapped desktop or
    // headless browser could run at several hundred: more than the robot side uses.  An average
    // rate cap (not a minimum gap), so jittered frames of a 120 Hz headset all pass.
    const now = performance.now();
    if (now < nextSendMs) return;
    nextSendMs = Math.max(nextSendMs, now - MIN_SEND_INTERVAL_MS) + MIN_SEND_INTERVAL_MS;
    ws.send(JSON.stringify(msg));
    stats.sent++;
    stats.sentTimes.push(performance.now());
    if (stats.sentTimes.length > RATE_WINDOW) stats.sentTimes.shift();
  }

  // control messages (record) bypass the pose rate cap: one is rare and must never be dropped
  function sendControl(msg) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !stats.authed) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  function sendRateHz() {
    const t = stats.sentTimes;
    return t.length > 1 ? (t.length - 1) * 1000 / (t[t.length - 1] - t[0]) : 0;
  }
  window.surgbot.sendRateHz = sendRateHz;

  function onText(m) {
    if (m.type === 'welcome') {
      stats.authed = true;
      $('conn').textContent = `connected as ${m.role}`;
      $('desktop').disabled = $('record').disabled = $('discard').disabled = m.role !== 'operator';
      xr.supported().then((ok) => { $('enter-vr').disabled = !ok || m.role !== 'operator'; });
    } else if (m.type === 'status') {
      stats.status = m;
      if (m.echo_t != null && m.echo_held_ms != null) {
        stats.rttMs = performance.timeOrigin + performance.now() - m.echo_t - m.echo_held_ms;
      }
      showStatus(m);
    }
  }

  // ------------------------------------------------------------------ video: newest frame only
  const canvas = $('video');
  const ctx2d = canvas.getContext('2d');
  let pending = null;
  let decoding = false;

  function onFrame(buf) {
    if (buf.byteLength >= 16) {      // age on arrival, before decoding (how the anchors' figures are taken)
      stats.recvAges.push(Date.now() - new DataView(buf).getFloat64(8, true));
      if (stats.recvAges.length > 20000) stats.recvAges.shift();
    }
    pending = buf;                 // an older undecoded frame is simply replaced
    if (!decoding) decodeNext();
  }

  async function decodeNext() {
    const buf = pending;
    pending = null;
    decoding = true;
    try {
      const dv = new DataView(buf);
      if (dv.getUint32(0, true) !== 0x314a4253) throw new Error('bad frame magic');   // "SBJ1"
      const seq = dv.getUint32(4, true);
      const captureMs = dv.getFloat64(8, true);
      const t0 = performance.now();
      const bmp = await createImageBitmap(new Blob([new Uint8Array(buf, 16)], { type: 'image/jpeg' }));
      if (canvas.width !== bmp.width || canvas.height !== bmp.height) {
        canvas.width = bmp.width;
        canvas.height = bmp.height;
      }
      ctx2d.drawImage(bmp, 0, 0);
      if (xr.session) xr.setVideo(bmp); else bmp.close();
      stats.decodeMs.push(performance.now() - t0);
      stats.ages.push(Date.now() - captureMs);   // same clock as the server's stamp on one machine
      if (stats.ages.length > 20000) { stats.ages.shift(); stats.decodeMs.shift(); }
      stats.framesDrawn++;
      stats.lastSeq = seq;
      if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify({ type: 'ack', seq })); stats.acked++; }
    } catch (e) {
      console.warn('frame dropped:', e);
    }
    decoding = false;
    if (pending) decodeNext();
  }

  // ------------------------------------------------------------------ status
  function fmt(v, unit) { return v == null ? '-' : `${Number(v).toFixed(1)}${unit}`; }

  function recordLines(r) {
    if (!r) return ['record -', ''];
    const state = r.pending ? `${r.pending}...` : r.recording ? `REC ${fmt(r.elapsed_s, ' s')}` : 'idle';
    const last = r.last ? `last ${r.last.action}: ${r.last.ok ? 'ok' : 'refused'} (${r.last.message})` : '';
    return [`record ${state}  kept ${r.episodes}  discarded ${r.discarded}`, last];
  }

  function showRecord(r) {
    if (!r) return;
    $('record').textContent = r.recording ? 'Stop & keep' : 'Record';
    $('record').classList.toggle('recording', !!r.recording);
  }

  function statusLines(m) {
    return [
      `link ${m.link}  rtt ${fmt(stats.rttMs, ' ms')}  xr ${fmt(m.xr_rate_hz, ' Hz')}  mode ${stats.mode}`,
      `video age ${fmt(m.video_age_ms, ' ms')}  glass-to-glass ${fmt(m.glass_to_glass_ms, ' ms')}`,
      `clutch ${m.clutch ? 'ON' : 'off'}  deadman ${m.deadman ? 'ON' : 'off'}  mapper ${m.mapper || '-'}`,
      `scope ${m.endoscope_mode || '-'}  fulcrum err ${fmt(m.fulcrum_error_mm, ' mm')}  PSM ${m.psm_state || '-'}`,
      `safety ${m.safety || '-'}  rejected ${m.rejected_total}`,
      ...recordLines(m.record),
    ];
  }

  function showStatus(m) {
    const lines = statusLines(m);
    $('overlay').textContent = lines.join('\n');
    showRecord(m.record);
    if (xr.session) xr.setStatus(lines);
  }

  // ------------------------------------------------------------------ matrices (column-major, OpenXR axes)
  function poseMatrix(yaw, pitch, x, y, z) {
    // R = Ry(yaw) * Rx(pitch); yaw about +y (left turn positive), pitch about +x (nose up positive)
    const cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
    return [cy, 0, -sy, 0, sy * sp, cp, cy * sp, 0, sy * cp, -sp, cy * cp, 0, x, y, z, 1];
  }

  // ------------------------------------------------------------------ record (contract section 10 episodes)
  // start / stop (keep) / discard; the console calls the recorder and answers in its status
  function record(action) {
    if (sendControl({ type: 'record', action })) stats.recordSent.push(action);
  }

  function toggleRecord() {
    const r = stats.status && stats.status.record;
    record(r && r.recording ? 'stop' : 'start');
  }

  // fires once per press, when the button has been held RECORD_HOLD_MS
  class LongPress {
    constructor(fire) { this.fire = fire; this.since = null; this.fired = false; }
    update(pressed, now) {
      if (!pressed) { this.since = null; this.fired = false; return; }
      if (this.since === null) this.since = now;
      if (!this.fired && now - this.since >= RECORD_HOLD_MS) { this.fired = true; this.fire(); }
    }
  }
  const holdX = new LongPress(toggleRecord);
  const holdY = new LongPress(() => record('discard'));

  function xrSample(msg) {
    send(msg);
    const b = (msg.left && msg.left.source === 'controller' && msg.left.buttons) || [];
    const now = performance.now();
    holdX.update((b[XR_X] || 0) > 0.5, now);
    holdY.update((b[XR_Y] || 0) > 0.5, now);
  }

  // ------------------------------------------------------------------ immersive session
  const xr = new window.XrConsole(xrSample);
  xr.onEnd = () => { stats.mode = 'idle'; };

  async function enterVR() {
    stopDesktop();
    await xr.enter();
    stats.mode = 'xr';
  }

  // ------------------------------------------------------------------ desktop mode
  const keys = new Set();
  const desk = { hand: [0.25, 1.1, -0.35], handYaw: 0, headYaw: 0, headPitch: 0, drag: false, last: 0, raf: 0 };
  window.surgbot.desk = desk;
  const captured = ['Space', 'ShiftLeft', 'ShiftRight', 'ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown'];
  addEventListener('keydown', (e) => {
    if (stats.mode !== 'desktop') return;
    keys.add(e.code);
    if (captured.includes(e.code)) e.preventDefault();
  });
  addEventListener('keyup', (e) => keys.delete(e.code));
  addEventListener('blur', () => keys.clear());      // a key held while the window lost focus is released
  canvas.addEventListener('mousedown', () => { desk.drag = true; });
  addEventListener('mouseup', () => { desk.drag = false; });
  addEventListener('mousemove', (e) => {
    if (stats.mode === 'desktop' && desk.drag) {        // drag moves the hand in the view plane
      desk.hand[0] += e.movementX * 0.0005;
      desk.hand[1] -= e.movementY * 0.0005;
    }
  });

  function gamepad() {
    for (const g of (navigator.getGamepads ? navigator.getGamepads() : [])) {
      if (g && g.mapping === 'standard') return g;
    }
    return null;
  }

  function deskFrame(now) {
    desk.raf = requestAnimationFrame(deskFrame);
    const dt = desk.last ? Math.min(0.05, (now - desk.last) / 1000) : 0;
    desk.last = now;
    const k = (c) => (keys.has(c) ? 1 : 0);
    const g = gamepad();
    const dead = (v) => (Math.abs(v) > 0.15 ? v : 0);
    const gb = (i) => (g && g.buttons[i] ? g.buttons[i].value : 0);
    const ga = (i) => (g ? dead(g.axes[i] || 0) : 0);
    const v = HAND_SPEED_M_S * dt;
    desk.hand[0] += v * (k('KeyD') - k('KeyA') + ga(0));
    desk.hand[1] += v * (k('KeyE') - k('KeyQ'));
    desk.hand[2] += v * (k('KeyS') - k('KeyW') + ga(1));
    desk.handYaw += TURN_SPEED_RAD_S * dt * (k('KeyZ') - k('KeyX'));
    desk.headYaw += TURN_SPEED_RAD_S * dt * (k('ArrowLeft') - k('ArrowRight') - ga(2));
    desk.headPitch += TURN_SPEED_RAD_S * dt * (k('ArrowUp') - k('ArrowDown') - ga(3));
    const clutch = Math.max(k('Space'), gb(5));
    const deadman = Math.max(k('ShiftLeft'), k('ShiftRight'), gb(4));
    const jaw = Math.max(k('KeyF'), gb(7));
    const zoom = k('KeyV') - k('KeyR') + gb(13) - gb(12);       // stick forward (-1) = zoom in
    const a = Math.max(k('Digit1'), gb(0)), b = Math.max(k('Digit2'), gb(1));
    send({
      type: 'xr', t: performance.timeOrigin + performance.now(),
      head: poseMatrix(desk.headYaw, desk.headPitch, 0, EYE_HEIGHT_M, 0),
      left: { pose: poseMatrix(0, 0, -0.25, 1.1, -0.35), trigger: 0, squeeze: deadman,
        buttons: [0, deadman, 0, 0, 0, 0], axes: [0, 0, 0, Math.max(-1, Math.min(1, zoom))] },
      right: { pose: poseMatrix(desk.handYaw, 0, desk.hand[0], desk.hand[1], desk.hand[2]), trigger: jaw,
        squeeze: clutch, buttons: [jaw, clutch, 0, 0, a, b], axes: [0, 0, 0, 0] },
    });
  }

  function startDesktop() {
    if (stats.mode === 'desktop') return;
    stats.mode = 'desktop';
    desk.last = 0;
    desk.raf = requestAnimationFrame(deskFrame);
    $('desktop').textContent = 'Stop desktop control';
  }

  function stopDesktop() {
    if (stats.mode !== 'desktop') return;
    cancelAnimationFrame(desk.raf);
    keys.clear();
    stats.mode = 'idle';
    $('desktop').textContent = 'Desktop control';
  }

  window.surgbot.enterVR = enterVR;
  window.surgbot.startDesktop = startDesktop;
  window.surgbot.stopDesktop = stopDesktop;

  $('connect').addEventListener('click', () => { if (ws) { wantConnected = false; ws.close(); } connect(); });
  $('enter-vr').addEventListener('click', () => enterVR().catch((e) => { $('conn').textContent = `XR: ${e}`; }));
  $('desktop').addEventListener('click', () => (stats.mode === 'desktop' ? stopDesktop() : startDesktop()));
  $('record').addEventListener('click', toggleRecord);
  $('discard').addEventListener('click', () => record('discard'));

  function start() { if ($('token').value) connect(); }

  // ?xr=emulate loads IWER (installed from npm, served by the console) so the immersive path runs
  // without a headset: developers and the tests use it; a real headset never needs it.
  if (params.get('xr') === 'emulate') {
    const s = document.createElement('script');
    s.src = '/vendor/iwer.min.js';
    s.onload = () => {
      const dev = new window.IWER.XRDevice(window.IWER.metaQuest3);
      dev.installRuntime({ forceInstall: true });
      window.xrDevice = dev;
      start();
    };
    s.onerror = () => { $('conn').textContent = 'IWER not installed (run the bootstrap)'; };
    document.head.appendChild(s);
  } else {
    start();
  }
})();
