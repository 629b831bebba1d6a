/* QR login (templates/_qr_login.html): poll this browser's request and continue once the app
   approved.  The status line is an aria-live region, so screen readers hear each change;
   without script the "I have approved in the app" button does the same in one step. */
(function () {
  "use strict";
  var form = document.getElementById("qr-form");
  var line = document.getElementById("qr-status");
  if (!form || !line || !window.fetch) { return; }
  var url = form.getAttribute("data-status");
  var every = parseInt(form.getAttribute("data-interval"), 10) || 2000;
  var last = "";
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
}());
