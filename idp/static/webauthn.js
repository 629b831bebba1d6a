/* WebAuthn for Yitong: registration (account page), second factor and passkey login.
   Buttons carry data-webauthn="register|authenticate|passkey", data-options, data-verify,
   data-csrf (sent as X-CSRFToken), and optionally data-ix / data-mode.
   Every message a person reads is translated by the page (#yt-messages in base.html, or the
   server's "message"); a browser's own DOMException text is never shown. */
(function () {
  "use strict";
  var MESSAGES = null;
  function msg(key) {  // read when first needed: #yt-messages comes after this script
    if (MESSAGES === null) {
      try { MESSAGES = JSON.parse(document.getElementById("yt-messages").textContent); } catch (e) { MESSAGES = {}; }
    }
    return MESSAGES[key] || MESSAGES.failed || key;
  }
  // DOMException names of the WebAuthn API (https://www.w3.org/TR/webauthn-2/) -> message keys.
  var BROWSER_ERRORS = {
    NotAllowedError: "cancelled", AbortError: "cancelled", TimeoutError: "cancelled",
    InvalidStateError: "known", SecurityError: "insecure", NotSupportedError: "notsupported",
    ConstraintError: "notsupported", NetworkError: "network", TypeError: "network"
  };
  function ServerMessage(text) { this.text = text; }
  function toBuf(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }
  function toB64u(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function post(url, body, csrf) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body || {})
    }).then(function (r) { return r.json().then(function (j) { return {status: r.status, body: j}; }); });
  }
  function status(text, failed) {
    var el = document.getElementById("webauthn-status");
    if (el) { el.textContent = text; el.className = failed ? "error" : "help"; el.setAttribute("data-done", failed ? "error" : "ok"); }
  }
  function fixIds(list) {
    return (list || []).map(function (c) { c.id = toBuf(c.id); return c; });
  }
  function run(btn) {
    var kind = btn.getAttribute("data-webauthn");
    var csrf = btn.getAttribute("data-csrf");
    var extra = {ix: btn.getAttribute("data-ix") || "", mode: btn.getAttribute("data-mode") || ""};
    if (!window.PublicKeyCredential) { status(msg("unsupported"), true); return; }
    status(msg("waiting"), false);
    post(btn.getAttribute("data-options"), extra, csrf).then(function (res) {
      if (res.status !== 200) {
        if (res.status === 403 && res.body.error === "access_denied" && btn.getAttribute("data-reauth")) {
          window.location = btn.getAttribute("data-reauth"); return null;
        }
        throw new ServerMessage(res.body.message || msg("failed"));
      }
      var o = res.body;
      o.challenge = toBuf(o.challenge);
      if (kind === "register") {
        o.user.id = toBuf(o.user.id);
        o.excludeCredentials = fixIds(o.excludeCredentials);
        return navigator.credentials.create({publicKey: o}).then(function (cred) {
          var r = cred.response;
          var payload = {
            id: cred.id, rawId: toB64u(cred.rawId), type: cred.type,
            response: {
              clientDataJSON: toB64u(r.clientDataJSON), attestationObject: toB64u(r.attestationObject),
              transports: r.getTransports ? r.getTransports() : []
            },
            clientExtensionResults: cred.getClientExtensionResults(),
            authenticatorAttachment: cred.authenticatorAttachment || undefined
          };
          var name = document.getElementById("webauthn-name");
          return post(btn.getAttribute("data-verify"), {credential: payload, name: name ? name.value : ""}, csrf);
        });
      }
      o.allowCredentials = fixIds(o.allowCredentials);
      return navigator.credentials.get({publicKey: o}).then(function (cred) {
        var r = cred.response;
        var payload = {
          id: cred.id, rawId: toB64u(cred.rawId), type: cred.type,
          response: {
            clientDataJSON: toB64u(r.clientDataJSON), authenticatorData: toB64u(r.authenticatorData),
            signature: toB64u(r.signature), userHandle: r.userHandle ? toB64u(r.userHandle) : null
          },
          clientExtensionResults: cred.getClientExtensionResults(),
          authenticatorAttachment: cred.authenticatorAttachment || undefined
        };
        return post(btn.getAttribute("data-verify"), {credential: payload, ix: extra.ix, mode: extra.mode}, csrf);
      });
    }).then(function (res) {
      if (!res) { return; }
      if (res.status === 200 && res.body.ok) {
        status(msg("done"), false);
        if (res.body.redirect) { window.location = res.body.redirect; }
      } else {
        status(res.body.message || msg("failed"), true);
      }
    }).catch(function (err) {
      if (err instanceof ServerMessage) { status(err.text, true); return; }
      status(msg(BROWSER_ERRORS[err && err.name] || "failed"), true);
    });
  }
  var buttons = document.querySelectorAll("[data-webauthn]");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].addEventListener("click", function (ev) { run(ev.currentTarget); });
  }
})();
