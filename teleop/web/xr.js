// surgbot console: the immersive-vr session (WebXR) and its renderer (plain WebGL2, no library).
// One textured quad shows the endoscope video 1.2 m in front of the operator, a second one the
// status text; every XR frame produces one `xr` message (head, grip poses and gamepads, or the
// wrist pose and pinch/grab of a tracked hand).
'use strict';

(function () {
  const PANEL_WIDTH_M = 0.96;
  const PANEL_DISTANCE_M = 1.2;
  const PANEL_HEIGHT_FLOOR_M = 1.45;   // panel centre above the floor (local-floor)
  const STATUS_LINES = 7;
  const STATUS_HEIGHT_M = 0.224;      // keeps the status canvas' aspect (1024 x 238)
  const PINCH_CLOSED_M = 0.015, PINCH_OPEN_M = 0.05;      // thumb tip - index tip distance
  const GRAB_CLOSED_M = 0.08, GRAB_OPEN_M = 0.13;          // fingertips - wrist distance

  const VS = `#version 300 es
  in vec2 pos; uniform mat4 proj, view, model; out vec2 uv;
  void main() { uv = vec2(pos.x + 0.5, 0.5 - pos.y); gl_Position = proj * view * model * vec4(pos, 0.0, 1.0); }`;
  const FS = `#version 300 es
  precision mediump float; in vec2 uv; uniform sampler2D tex; out vec4 color;
  void main() { color = texture(tex, uv); }`;

  function clamp01(x) { return Math.max(0, Math.min(1, x)); }
  function ramp(d, closed, open) { return clamp01((open - d) / (open - closed)); }

  function compile(gl) {
    const prog = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, VS], [gl.FRAGMENT_SHADER, FS]]) {
      const s = gl.createShader(type);
      gl.shaderSource(s, src);
      gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      gl.attachShader(prog, s);
    }
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
    return prog;
  }

  function texture(gl) {
    const t = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, t);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, 1, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array([0, 0, 0, 255]));
    return t;
  }

  function panelModel(width, height, y, z) {
    // column-major scale + translation
    return new Float32Array([width, 0, 0, 0, 0, height, 0, 0, 0, 0, 1, 0, 0, y, z, 1]);
  }

  function handSide(frame, ref, hand) {
    const get = (name) => { const j = hand.get(name); return j ? frame.getJointPose(j, ref) : null; };
    const wrist = get('wrist');
    if (!wrist) return null;
    const p = (jp) => jp.transform.position;
    const dist = (a, b) => Math.hypot(a.x - b.x, a.y - b.y, a.z - b.z);
    const thumb = get('thumb-tip'), index = get('index-finger-tip');
    const pinch = thumb && index ? ramp(dist(p(thumb), p(index)), PINCH_CLOSED_M, PINCH_OPEN_M) : 0;
    const tips = ['middle-finger-tip', 'ring-finger-tip', 'pinky-finger-tip'].map(get).filter(Boolean);
    const grab = tips.length ? ramp(tips.reduce((s, j) => s + dist(p(j), p(wrist)), 0) / tips.length,
      GRAB_CLOSED_M, GRAB_OPEN_M) : 0;
    return { pose: Array.from(wrist.transform.matrix), trigger: pinch, squeeze: grab, buttons: [], axes: [],
      source: 'hand' };
  }

  function controllerSide(frame, ref, src) {
    const pose = frame.getPose(src.gripSpace, ref);
    if (!pose) return null;
    const gp = src.gamepad;
    const buttons = gp ? Array.from(gp.buttons).slice(0, 8).map((b) => clamp01(b.value)) : [];
    const axes = gp ? Array.from(gp.axes).slice(0, 4).map((a) => Math.max(-1, Math.min(1, a))) : [];
    return { pose: Array.from(pose.transform.matrix), trigger: buttons[0] || 0, squeeze: buttons[1] || 0,
      buttons, axes, source: 'controller' };
  }

  class XrConsole {
    constructor(onSample) {
      this.onSample = onSample;      // (msg) => void, once per XR frame
      this.session = null;
      this.video = null;             // newest ImageBitmap not yet uploaded
      this.videoAspect = 4 / 3;
      this.statusCanvas = document.createElement('canvas');
      this.statusCanvas.width = 1024;
      this.statusCanvas.height = 14 + 32 * STATUS_LINES;
      this.statusDirty = true;
      this.frames = 0;
      this.refType = '';
    }

    async supported() {
      return !!(navigator.xr && await navigator.xr.isSessionSupported('immersive-vr'));
    }

    setStatus(lines) {
      const c = this.statusCanvas.getContext('2d');
      c.fillStyle = '#000';
      c.fillRect(0, 0, c.canvas.width, c.canvas.height);
      c.fillStyle = '#cfc';
      c.font = '26px monospace';
      lines.slice(0, STATUS_LINES).forEach((l, i) => c.fillText(l, 12, 32 + i * 32));
      this.statusDirty = true;
    }

    setVideo(bitmap) {
      if (this.video && this.video !== bitmap) this.video.close();
      this.video = bitmap;
      this.videoAspect = bitmap.width / bitmap.height;
    }

    async enter() {
      const session = await navigator.xr.requestSession('immersive-vr',
        { optionalFeatures: ['local-floor', 'hand-tracking'] });
      const canvas = document.createElement('canvas');
      const gl = canvas.getContext('webgl2', { xrCompatible: true, antialias: false });
      if (gl.makeXRCompatible) await gl.makeXRCompatible();
      session.updateRenderState({ baseLayer: new XRWebGLLayer(session, gl) });
      try {
        this.ref = await session.requestReferenceSpace('local-floor');
        this.refType = 'local-floor';
      } catch (e) {
        this.ref = await session.requestReferenceSpace('local');    // origin at the head: panel at eye height
        this.refType = 'local';
      }
      this.gl = gl;
      this.prog = compile(gl);
      this.buf = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, this.buf);
      gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-0.5, -0.5, 0.5, -0.5, -0.5, 0.5, 0.5, 0.5]), gl.STATIC_DRAW);
      this.videoTex = texture(gl);
      this.statusTex = texture(gl);
      this.session = session;
      session.addEventListener('end', () => { this.session = null; if (this.onEnd) this.onEnd(); });
      session.requestAnimationFrame((t, f) => this.frame(t, f));
      return session;
    }

    exit() { if (this.session) this.session.end(); }

    sample(frame) {
      const pose = frame.getViewerPose(this.ref);
      if (!pose) return null;
      const msg = { type: 'xr', t: performance.timeOrigin + performance.now(),
        head: Array.from(pose.transform.matrix) };
      for (const src of frame.session.inputSources) {
        const side = src.handedness;
        if ((side !== 'left' && side !== 'right') || src.targetRayMode === 'transient-pointer') continue;
        const s = src.hand ? handSide(frame, this.ref, src.hand)
          : src.gripSpace ? controllerSide(frame, this.ref, src) : null;
        if (s) msg[side] = s;
      }
      return msg;
    }

    frame(t, frame) {
      const session = frame.session;
      session.requestAnimationFrame((t2, f2) => this.frame(t2, f2));
      const msg = this.sample(frame);
      if (msg) this.onSample(msg);
      this.frames++;
      this.render(frame);
    }

    upload(tex, source) {
      const gl = this.gl;
      gl.bindTexture(gl.TEXTURE_2D, tex);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, source);
    }

    render(frame) {
      const gl = this.gl;
      const layer = frame.session.renderState.baseLayer;
      const pose = frame.getViewerPose(this.ref);
      if (!pose) return;
      if (this.video) { this.upload(this.videoTex, this.video); this.video.close(); this.video = null; }
      if (this.statusDirty) { this.upload(this.statusTex, this.statusCanvas); this.statusDirty = false; }
      gl.bindFramebuffer(gl.FRAMEBUFFER, layer.framebuffer);
      gl.clearColor(0.05, 0.05, 0.07, 1);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      gl.useProgram(this.prog);
      gl.bindBuffer(gl.ARRAY_BUFFER, this.buf);
      const loc = gl.getAttribLocation(this.prog, 'pos');
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
      const y = this.refType === 'local-floor' ? PANEL_HEIGHT_FLOOR_M : 0;
      const h = PANEL_WIDTH_M / this.videoAspect;
      const panels = [[this.videoTex, panelModel(PANEL_WIDTH_M, h, y, -PANEL_DISTANCE_M)],
        [this.statusTex, panelModel(PANEL_WIDTH_M, STATUS_HEIGHT_M, y - h / 2 - STATUS_HEIGHT_M / 2 - 0.02,
          -PANEL_DISTANCE_M)]];
      for (const view of pose.views) {
        const vp = layer.getViewport(view);
        gl.viewport(vp.x, vp.y, vp.width, vp.height);
        gl.uniformMatrix4fv(gl.getUniformLocation(this.prog, 'proj'), false, view.projectionMatrix);
        gl.uniformMatrix4fv(gl.getUniformLocation(this.prog, 'view'), false, view.transform.inverse.matrix);
        for (const [tex, model] of panels) {
          gl.bindTexture(gl.TEXTURE_2D, tex);
          gl.uniformMatrix4fv(gl.getUniformLocation(this.prog, 'model'), false, model);
          gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
        }
      }
    }
  }

  window.XrConsole = XrConsole;
})();
