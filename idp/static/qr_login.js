/* QR login (templates/_qr_login.html).  Reading the login page stores nothing; this script asks
   for a code (POST /qr/new, the page's CSRF token in the form), shows it, then polls this
   browser's request and continues once the app approved.  The status line is an aria-live
   region, so screen readers hear each change; without script the "Show a QR code" and
   "I have approved in the app" buttons do the same in two steps. */
(function () {
  "use strict";
  var slot = document.getElementById("qr-slot");
  if (!slot || !window.fetch || !window.FormData) { return; }
  var last = "";

  function watch() {
    var form = document.getElementById("qr-form");
    var line = document.getElementById("qr-status");
    if (!form || !line) { return; }
    var url = form.getAttribute("data-status");
    var every = parseInt(form.getAttribute("data-interval"), 10) || 2000;
    function show(state, text) {
      if (text !== last) { line.textContent = text; last = text; }
      line.setAttribute("data-state", state);
    }
    function poll() {
      fetch(url, {credentials: "same-origin", cache: "no-store"})
        .then(function (r) { return r.json(); })
        .then(function (body) {
          show(body.status, body.message);
          if (body.status === "approved") {
            form.submit();
          } else if (body.status === "pending") {
            window.setTimeout(poll, every);
          } else {
            var again = document.getElementById("qr-refresh");
            if (again) { again.focus(); }
          }
        })
        .catch(function () { window.setTimeout(poll, every * 2); });
    }
    window.setTimeout(poll, every);
  }

  var ask = document.getElementById("qr-show-form");
  if (!ask) { watch(); return; }  // drawn by the server (no-script path): just follow it
  fetch(ask.getAttribute("data-new"), {
    method: "POST", credentials: "same-origin", cache: "no-store", body: new FormData(ask)
  })
    .then(function (r) { return r.json(); })
    .then(function (body) {
      if (typeof body.html !== "string") { return; }
      slot.innerHTML = body.html;  // our own template, rendered with autoescaping
      watch();
    })
    .catch(function () { /* the button still works */ });
}());
