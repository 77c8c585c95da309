// Ticks every [data-live-seconds] element locally: value = seconds + rate x elapsed.
// The server renders the live value on its database clock; no polling needed.
(function () {
  "use strict";
  const loadedAt = performance.now();

  function format(total) {
    const seconds = Math.max(0, Math.floor(total));
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    return h + ":" + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
  }

  function render() {
    const elapsed = (performance.now() - loadedAt) / 1000;
    document.querySelectorAll("[data-live-seconds]").forEach(function (node) {
      const base = parseFloat(node.dataset.liveSeconds);
      const rate = parseFloat(node.dataset.liveRate || "0");
      node.textContent = format(base + rate * elapsed);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    render();
    setInterval(render, 1000);
  });
})();
