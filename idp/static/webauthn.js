/* WebAuthn for Yitong: registration (account page), second factor and passkey login.
   Buttons carry data-webauthn="register|authenticate|passkey", data-options, data-verify,
   data-csrf (sent as X-CSRFToken), and optionally data-ix / data-mode. */
(function () {
  "use strict";
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
    if (!window.PublicKeyCredential) { status("This browser does not support security keys or passkeys.", true); return; }
    status("…", false);
    post(btn.getAttribute("data-options"), extra, csrf).then(function (res) {
      if (res.status !== 200) {
        if (res.status === 403 && res.body.error === "access_denied" && btn.getAttribute("data-reauth")) {
          window.location = btn.getAttribute("data-reauth"); return null;
        }
        throw new Error(res.body.message || "error");
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
        status("OK", false);
        if (res.body.redirect) { window.location = res.body.redirect; }
      } else {
        status(res.body.message || "error", true);
      }
    }).catch(function (err) { status(String(err && err.message || err), true); });
  }
  var buttons = document.querySelectorAll("[data-webauthn]");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].addEventListener("click", function (ev) { run(ev.currentTarget); });
  }
})();
