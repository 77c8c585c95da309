// The people's page, enhanced. htmx does the talking (forms, week navigation,
// the regions and the bell drawn again when the stream says something changed); this
// script does what stays in the page: live times tick (and the running one in
// the tab's title), "I stopped earlier…" opens at now, what is being typed
// survives a redraw, keyboard shortcuts. Without it every form still works,
// with a page load.
(function () {
  "use strict";

  // The bell (in the header of every page) ---------------------------------------
  // Its panel is a plain <details>: this closes it on Escape (the focus back on
  // the bell) and on a click outside; drawn again (the stream, an action), it
  // stays open if it was, says the answer to one of its forms inside it too,
  // and keeps the focus in it.
  function bellMenu() { return document.querySelector("#bell .bell-menu"); }

  document.addEventListener("keydown", function (event) {
    const menu = bellMenu();
    if (event.key !== "Escape" || !menu || !menu.open) return;
    menu.open = false;
    menu.querySelector("summary").focus();
  });
  document.addEventListener("click", function (event) {
    const menu = bellMenu();
    if (menu && menu.open && !menu.contains(event.target)) menu.open = false;
  });
  // Its "I stopped at" fields end at now: the database's when drawn, plus what passed since
  // (moved as one comes to them, before anything typed is checked against it).
  const drawnAt = new WeakMap();
  function noteDrawn() {
    document.querySelectorAll("#bell input[data-now], .notices input[data-now]").forEach(function (input) {
      if (!drawnAt.has(input)) drawnAt.set(input, performance.now());
    });
  }
  function moveToNow(input) {
    noteDrawn();
    const now = Date.parse(input.dataset.now + "Z") + (performance.now() - drawnAt.get(input));
    const max = new Date(now).toISOString().slice(0, 19);
    input.max = input.min && max < input.min ? input.min : max;
  }
  noteDrawn();
  document.body.addEventListener("htmx:oobAfterSwap", noteDrawn);
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("input[data-now]") && event.target.closest("#bell, .notices")) {
      moveToNow(event.target);
    }
  });

  // What is typed in it survives a redraw, as in the page's regions (see below).
  document.addEventListener("input", function (event) {
    const form = event.target.form;
    if (form && form.closest("#bell")) form.dataset.dirty = "1";
  });
  document.body.addEventListener("htmx:oobBeforeSwap", function (event) {
    if (event.detail.target.id !== "bell") return;
    const was = event.detail.target.querySelector(".bell-menu");
    const fresh = event.detail.fragment.querySelector(".bell-menu");
    if (was && was.open && fresh) fresh.open = true;
  });
  let fromBell = false;  // the request in flight was sent by one of the bell's forms
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    fromBell = Boolean(event.detail.elt.closest && event.detail.elt.closest("#bell"));
  });
  // Its answer's message (swapped last, after the bell drawn again) is said in the panel too.
  document.body.addEventListener("htmx:oobAfterSwap", function (event) {
    if (!fromBell || event.detail.target.id !== "messages") return;
    const status = document.querySelector("#bell .bell-status");
    const message = event.detail.target.querySelector(".message");
    if (!status) return;
    status.textContent = message ? message.textContent : "";
    status.className = message ? message.className.replace("message", "bell-status message") : "bell-status message";
    status.hidden = !message;
  });
  document.body.addEventListener("htmx:afterSettle", function () {
    if (!fromBell) return;
    fromBell = false;
    const menu = bellMenu();
    if (menu && (document.activeElement === document.body || !document.activeElement)) {
      const first = menu.open && menu.querySelector(".bell-panel button, .bell-panel input, .bell-panel a[href]");
      (first || menu.querySelector("summary")).focus({ preventScroll: true });
    }
  });

  const live = document.getElementById("live");
  if (!live) return;
  const messages = document.getElementById("messages");

  // Live time -------------------------------------------------------------------
  // Each [data-live-seconds] value was true when its region was drawn: it grows
  // by its rate (running fiches) times the seconds since that element appeared.
  const seen = new WeakMap();

  function format(total) {
    const seconds = Math.max(0, Math.floor(total));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return h + ":" + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
  }

  function elapsed(node) {
    const now = performance.now();
    if (!seen.has(node)) seen.set(node, now);
    return (now - seen.get(node)) / 1000;
  }

  function tick() {
    document.querySelectorAll("[data-now]").forEach(elapsed);  // from when it was drawn
    document.querySelectorAll("[data-live-seconds]").forEach(function (node) {
      const rate = parseFloat(node.dataset.liveRate || "0");
      node.textContent = format(parseFloat(node.dataset.liveSeconds) + rate * elapsed(node));
    });
    const running = document.querySelector("#timer [data-title]");
    const site = live.dataset.siteTitle;
    if (running) {
      const time = running.querySelector(".timer-time");
      document.title = (time ? time.textContent + " · " : "") + running.dataset.title + " · " + site;
    } else {
      document.title = live.dataset.idleTitle + " · " + site;
    }
  }

  // "I stopped earlier…": when opened, it reads now (never before the stretch's first second).
  function localNow(input) {
    // data-now is the database's now, local, when drawn; the page's clock adds what passed since.
    const drawn = Date.parse(input.dataset.now + "Z");
    return new Date(drawn + elapsed(input) * 1000).toISOString().slice(0, 19);
  }

  // Set as its summary is clicked, before the details open (their "toggle" event comes later, in a task of its own).
  document.addEventListener("click", function (event) {
    const summary = event.target.closest(".stop-at > summary");
    if (!summary || summary.parentElement.open) return;
    const input = summary.parentElement.querySelector("input[type=datetime-local]");
    if (!input) return;
    let now = localNow(input);
    if (input.min && now < input.min) now = input.min;
    input.max = now;
    input.value = now;
  });

  // Messages --------------------------------------------------------------------
  function say(text, kind) {
    const p = document.createElement("p");
    p.className = "message " + kind;
    p.textContent = text;
    messages.replaceChildren(p);
  }

  // A refusal is said at the top of the page and beside the form that asked,
  // which may be far down the page: nobody has to scroll to learn why.
  let asking = null;
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    asking = (event.detail.elt.closest && event.detail.elt.closest("form")) || null;
  });
  document.body.addEventListener("htmx:oobAfterSwap", function (event) {
    if (event.detail.target.id !== "messages" || fromBell || !asking) return;
    const form = asking;
    asking = null;
    form.querySelectorAll(".form-refusal").forEach(function (old) { old.remove(); });
    const refusal = event.detail.target.querySelector(".message.error");
    if (!refusal || !document.body.contains(form)) return;
    const near = document.createElement("p");
    near.className = "message error form-refusal";
    near.setAttribute("role", "alert");
    near.textContent = refusal.textContent;
    form.appendChild(near);
  });

  // An answer whose form was drawn again while it ran (the stream's redraw
  // came first) is still drawn: htmx looks for its regions under the form it
  // came from, which is no longer in the page, so they are drawn against the
  // page itself, and the address it moves to is pushed as htmx would. Its
  // failures are said too. Listened to on the form, as its events no longer
  // bubble.
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    const elt = event.detail.elt;
    if (!elt.closest || !elt.closest("form")) return;
    elt.addEventListener("htmx:beforeSwap", function (swap) {
      if (elt.isConnected || !swap.detail.shouldSwap) return;
      swap.detail.shouldSwap = false;
      const pushed = swap.detail.xhr.getResponseHeader("HX-Push-Url");
      if (pushed && pushed !== "false") history.pushState({ htmx: true }, "", pushed);
      htmx.swap(live, swap.detail.serverResponse, { swapStyle: "none" }, { contextElement: live });
    }, { once: true });
    ["htmx:responseError", "htmx:sendError"].forEach(function (name) {
      elt.addEventListener(name, function () {
        if (!elt.isConnected) say(live.dataset.networkError, "error");
      }, { once: true });
    });
  });

  document.body.addEventListener("htmx:sendError", function () { say(live.dataset.networkError, "error"); });
  document.body.addEventListener("htmx:responseError", function () { say(live.dataset.networkError, "error"); });

  // Redraws keep what is being typed ---------------------------------------------
  // A region drawn again (after the stream's news, or an action) would drop an
  // open edit form and what was typed in it: such forms, and open details, are
  // kept as they are, except the form whose own answer this is.
  let submitting = null;
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    const form = event.detail.elt.closest && event.detail.elt.closest("form");
    if (form) { submitting = form; delete form.dataset.dirty; }
  });
  document.body.addEventListener("htmx:afterRequest", function (event) {
    const form = event.detail.elt.closest && event.detail.elt.closest("form");
    // A refusal leaves the form as typed; a success draws it afresh.
    if (form && !event.detail.successful) form.dataset.dirty = "1";
    if (form === submitting) setTimeout(function () { submitting = null; });
  });
  live.addEventListener("input", function (event) {
    const form = event.target.form;
    if (form) form.dataset.dirty = "1";
  });

  function worthKeeping(node) {
    if (submitting && (node === submitting || node.contains(submitting))) return false;
    if (node.tagName === "DETAILS") return node.open;
    return node.dataset.dirty === "1" || node.contains(document.activeElement);
  }

  // Where the focus was when its region was drawn again: the same element (by
  // id), else the same entry's summary, else the region's first control.
  let focused = null;
  function remember(active) {
    const region = active && active !== document.body && active.closest("#live > [id]");
    if (!region) return;
    const entry = active.closest("[data-entry-id]");
    focused = { node: active, id: active.id, entry: entry && entry.dataset.entryId, region: region.id };
  }
  // Before the request: its button is about to be disabled, and so to lose the focus.
  document.body.addEventListener("htmx:beforeRequest", function () { remember(document.activeElement); });
  document.body.addEventListener("htmx:oobBeforeSwap", function (event) {
    const old = event.detail.target, fresh = event.detail.fragment;
    if (old.contains(document.activeElement)) remember(document.activeElement);
    old.querySelectorAll("details[id], form[id]").forEach(function (node) {
      if (!worthKeeping(node)) return;
      const twin = fresh.querySelector("#" + CSS.escape(node.id));
      if (twin && !(twin.parentElement && twin.parentElement.closest("[hx-preserve]"))) twin.setAttribute("hx-preserve", "true");
    });
  });
  document.body.addEventListener("htmx:afterSettle", function () {
    if (focused && (document.activeElement === document.body || !document.activeElement)) {
      const region = document.getElementById(focused.region);
      const again = (focused.node.isConnected && !focused.node.disabled && focused.node)
        || (focused.id && document.getElementById(focused.id))
        || (focused.entry && document.querySelector('[data-entry-id="' + focused.entry + '"] summary'))
        || (region && region.querySelector("button, input:not([type=hidden]), select, summary, a[href]"));
      if (again) again.focus({ preventScroll: true });
    }
    focused = null;
    tick();
  });

  // The stream ------------------------------------------------------------------
  // Its "fiche" events draw the regions again (hx-trigger on #refresher). On
  // each (re)connection its snapshot names the running fiches: if they are not
  // those shown, something changed while disconnected.
  const sources = new WeakSet();
  document.body.addEventListener("htmx:sseOpen", function (event) {
    const source = event.detail.source;
    if (!source || sources.has(source)) return;
    sources.add(source);
    source.addEventListener("snapshot", function (message) {
      const snapshot = JSON.parse(message.data);
      const running = snapshot.fiches.map(f => String(f.id)).sort().join(" ");
      const timer = document.getElementById("timer");
      const shown = ((timer && timer.dataset.running) || "").trim().split(/\s+/).filter(Boolean).sort().join(" ");
      if (running !== shown) htmx.trigger("#refresher", "refresh");
      // A notification that came while the stream was closed: the bell is drawn again.
      const bell = document.getElementById("bell");
      if (bell && snapshot.notifications_unread !== undefined
          && String(snapshot.notifications_unread) !== bell.dataset.unread) {
        htmx.trigger("#bell-refresher", "refresh");
      }
    });
  });

  // Adding an entry on a given day ----------------------------------------------
  document.addEventListener("click", function (event) {
    const link = event.target.closest("[data-add-day]");
    if (!link) return;
    const day = document.getElementById("add-day");
    if (!day) return;
    event.preventDefault();
    day.value = link.dataset.addDay;
    day.form.dataset.dirty = "1";
    day.form.scrollIntoView({ block: "nearest" });
    document.getElementById("add-libelle").focus();
  });

  // Keyboard shortcuts ----------------------------------------------------------
  const help = document.getElementById("shortcuts");

  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable]:not([contenteditable=false])") !== null;
  }

  function go(key) {
    const link = document.querySelector('#week [data-key="' + key + '"]');
    if (link) link.click();
  }

  function startOrStop() {
    const stop = document.querySelector("#timer form[data-stop]");
    if (stop) { stop.requestSubmit(); return; }
    const start = document.getElementById("timer-form");
    if (!start) return;
    if (start.checkValidity()) start.requestSubmit();
    else start.reportValidity();
  }

  function newEntry() {
    const field = document.getElementById("timer-libelle") || document.getElementById("add-libelle");
    if (field) { field.focus(); field.scrollIntoView({ block: "nearest" }); }
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-shortcuts]") && help) help.showModal();
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (help && help.open) return;  // the dialog: Escape closes it (the browser's own), nothing else acts
    if (typing(event.target) || event.isComposing) return;
    const actions = {
      "?": function () { if (help) help.showModal(); },
      s: startOrStop,
      n: newEntry,
      ArrowLeft: function () { go("previous"); },
      ArrowRight: function () { go("next"); },
      t: function () { go("this"); },
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });

  tick();
  setInterval(tick, 1000);
})();
