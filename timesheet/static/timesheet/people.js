// The people's page, enhanced: live time ticks locally; forms post in the
// background; the list re-renders when the stream says a fiche changed
// (here, in another tab, on another device, in the admin, or by the ticker).
// Without this script every form still works, with a page load.
(function () {
  "use strict";
  const list = document.getElementById("fiches");
  const messages = document.getElementById("messages");
  let loadedAt = performance.now();

  function format(total) {
    const seconds = Math.max(0, Math.floor(total));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return h + ":" + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
  }

  function tick() {
    const elapsed = (performance.now() - loadedAt) / 1000;
    document.querySelectorAll("[data-live-seconds]").forEach(function (node) {
      node.textContent = format(parseFloat(node.dataset.liveSeconds) + parseFloat(node.dataset.liveRate || "0") * elapsed);
    });
  }

  function say(text, kind) {
    const p = document.createElement("p");
    p.className = "message " + kind;
    p.textContent = text;
    messages.replaceChildren(p);
  }

  let refreshing = null;
  function refresh() {
    // One refresh at a time; a change during one triggers another after it.
    if (refreshing) { refreshing.again = true; return refreshing.promise; }
    refreshing = { again: false };
    refreshing.promise = fetch(location.pathname, { credentials: "same-origin" })
      .then(r => r.ok ? r.text() : Promise.reject(r.status))
      .then(function (page) {
      const fresh = new DOMParser().parseFromString(page, "text/html");
      list.innerHTML = fresh.getElementById("fiches").innerHTML;
      document.querySelector(".totals").innerHTML = fresh.querySelector(".totals").innerHTML;
      loadedAt = performance.now();
      tick();
    }).catch(function () { /* the next event or a reload will catch up */ }).finally(function () {
      const again = refreshing.again;
      refreshing = null;
      if (again) refresh();
    });
    return refreshing.promise;
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!list.contains(form)) return;  // the create and token forms load the page as usual
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    }).then(r => r.json().then(body => ({ ok: r.ok, body })))
      .then(function ({ ok, body }) {
        if (ok) say(body.message || "", "success"); else say(body.error || "Refused.", "error");
        return refresh();
      })
      .catch(function () { say(document.documentElement.lang === "fr" ? "Réseau indisponible : rien n'a changé." : "Network unavailable: nothing changed.", "error"); })
      .finally(function () { if (button) button.disabled = false; });
  });

  if (window.EventSource && list) {
    const source = new EventSource(list.dataset.streamUrl);
    source.addEventListener("fiche", refresh);
    source.addEventListener("snapshot", function (event) {
      // On (re)connection: the running set may have changed while disconnected.
      const running = JSON.parse(event.data).fiches.map(f => String(f.id)).sort().join(" ");
      const shown = (list.querySelector(".fiche-list").dataset.running || "").trim().split(/\s+/).filter(Boolean).sort().join(" ");
      if (running !== shown) refresh();
    });
  }

  tick();
  setInterval(tick, 1000);
})();
