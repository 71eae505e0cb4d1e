// embodia console, Teleoperate page: keyboard and gamepad state to the server over a WebSocket, JPEG frames from it
// drawn on a canvas. The server owns the key map (embodia/data/teleop.py); this page only reports what is pressed.
(function () {
  "use strict";
  var form = document.getElementById("teleop-start");
  if (!form) { return; }
  var canvas = document.getElementById("teleop-canvas");
  var context = canvas.getContext("2d");
  var saveButton = document.getElementById("teleop-save");
  var connectButton = document.getElementById("teleop-connect");
  var MOTION = ["w", "a", "s", "d", "q", "e", "arrowup", "arrowdown", "arrowleft", "arrowright"];
  var PRESS = [" ", "enter", "backspace"];
  var socket = null, held = {}, drawing = false, pending = null, lastAxes = "", gamepadButtons = {};

  function text(id, value) { document.getElementById(id).textContent = value; }
  function send(message) { if (socket && socket.readyState === 1) { socket.send(JSON.stringify(message)); } }
  function sendHeld() { send({ type: "keys", down: Object.keys(held) }); }

  function draw(blob) {
    if (drawing) { pending = blob; return; }  // keep only the newest frame while one is decoding
    drawing = true;
    createImageBitmap(blob).then(function (bitmap) {
      context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      bitmap.close();
    }).catch(function () {}).then(function () {
      drawing = false;
      if (pending) { var next = pending; pending = null; draw(next); }
    });
  }

  function showStatus(s) {
    text("teleop-episode", String(s.episode + 1));
    text("teleop-kept", String(s.kept));
    text("teleop-time", s.time_s.toFixed(1) + " s");
    text("teleop-ee", s.ee_m.map(function (v) { return v.toFixed(3); }).join(", ") + " m");
    text("teleop-gripper", s.gripper + " (" + (s.gripper_opening_m * 100).toFixed(1) + " cm)");
    text("teleop-reward", s.reward.toFixed(3));
    text("teleop-success", s.success ? "yes" : "no");
    text("teleop-fps", s.fps.toFixed(1));
    canvas.dataset.frames = String((Number(canvas.dataset.frames) || 0) + 1);
    canvas.dataset.fps = String(s.fps);
    if (s.ended) { text("teleop-state", "episode " + (s.ended === "discard" ? "discarded" : "ended (" + s.ended + ")")); }
    saveButton.disabled = s.kept < 1;
  }

  function onMessage(event) {
    if (typeof event.data !== "string") { draw(event.data); return; }
    var message = JSON.parse(event.data);
    if (message.type === "status") { showStatus(message); }
    else if (message.type === "ready") {
      text("teleop-state", "recording " + message.task + " at " + message.control_hz.toFixed(0) + " Hz as " + message.operator);
      canvas.focus();
    } else if (message.type === "saved") {
      var result = document.getElementById("teleop-result");
      result.className = "ok";
      result.textContent = "Saved " + message.name + " (" + message.episodes + " episodes, " + message.frames +
        " frames) as " + message.ref + ".";
      result.dataset.sha256 = message.sha256;
    } else if (message.type === "notice") { text("teleop-state", message.message); }
    else if (message.type === "error") {
      var error = document.getElementById("teleop-result");
      error.className = "error";
      error.textContent = message.message;
    }
  }

  function connect(event) {
    event.preventDefault();
    if (socket) { socket.close(); }
    var url = new URL(form.dataset.ws, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("task", document.getElementById("teleop-task").value);
    url.searchParams.set("image_size", String(canvas.width));
    document.getElementById("teleop-result").textContent = "";
    canvas.dataset.frames = "0";
    text("teleop-state", "starting…");
    socket = new WebSocket(url.toString());
    socket.binaryType = "blob";
    socket.onmessage = onMessage;
    socket.onclose = function () {
      text("teleop-state", "stopped");
      connectButton.textContent = "Start";
      saveButton.disabled = true;
      socket = null;
    };
    connectButton.textContent = "Restart";
  }

  function keyName(event) { return event.key === " " ? " " : event.key.toLowerCase(); }
  function typing(event) { var t = event.target; return t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA"); }

  document.addEventListener("keydown", function (event) {
    if (!socket || typing(event) || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var key = keyName(event);
    if (MOTION.indexOf(key) >= 0) {
      event.preventDefault();
      if (!held[key]) { held[key] = true; sendHeld(); }
    } else if (PRESS.indexOf(key) >= 0) {
      event.preventDefault();
      if (!event.repeat) { send({ type: "press", key: key }); }
    }
  });
  document.addEventListener("keyup", function (event) {
    var key = keyName(event);
    if (held[key]) { delete held[key]; sendHeld(); }
  });
  window.addEventListener("blur", function () { held = {}; sendHeld(); });

  document.querySelectorAll("[data-press]").forEach(function (button) {
    button.addEventListener("click", function () { send({ type: "press", key: button.dataset.press }); canvas.focus(); });
  });

  function dead(v) { return Math.abs(v) < 0.15 ? 0 : v; }
  function pollGamepad() {
    var pads = navigator.getGamepads ? navigator.getGamepads() : [];
    var pad = null;
    for (var i = 0; i < pads.length; i++) { if (pads[i]) { pad = pads[i]; break; } }
    if (pad && socket) {
      var axes = { type: "axes", forward: -dead(pad.axes[1] || 0), right: dead(pad.axes[0] || 0), up: -dead(pad.axes[3] || 0) };
      var key = JSON.stringify(axes);
      if (key !== lastAxes) { lastAxes = key; send(axes); }
      [[0, " "], [9, "enter"]].forEach(function (pair) {
        var down = pad.buttons[pair[0]] && pad.buttons[pair[0]].pressed;
        if (down && !gamepadButtons[pair[0]]) { send({ type: "press", key: pair[1] }); }
        gamepadButtons[pair[0]] = down;
      });
    }
    window.requestAnimationFrame(pollGamepad);
  }

  form.addEventListener("submit", connect);
  saveButton.addEventListener("click", function () { send({ type: "save" }); text("teleop-state", "saving…"); });
  window.requestAnimationFrame(pollGamepad);
})();
