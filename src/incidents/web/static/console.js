// The console's behaviour: forms that call the JSON API, alert acknowledgements, and
// the live timeline (EventSource on the API's SSE endpoint, resuming after a drop).
// No credentials are handled here: the session cookie is HttpOnly; changes carry the
// page's CSRF proof.
"use strict";
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";
  const flash = document.getElementById("flash");

  function say(text, isError) {
    if (!flash) return;
    flash.textContent = text;
    flash.className = isError ? "flash error" : "flash";
    flash.hidden = false;
  }

  async function send(url, body, contentType) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": contentType || "application/json",
        "Accept": "application/json, application/problem+json",
        "X-CSRF-Token": csrf,
      },
      body: JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const detail = data && (data.detail || data.title);
      throw new Error(detail || ("request failed: " + response.status));
    }
    return data;
  }

  document.querySelectorAll("form[data-api]").forEach(function (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const body = {};
      new FormData(form).forEach(function (value, key) {
        if (typeof value === "string" && value.trim() !== "") body[key] = value;
      });
      const button = form.querySelector('button[type="submit"]');
      if (button) button.disabled = true;
      try {
        const data = await send(form.dataset.api, body);
        const then = form.dataset.then;
        if (then === "incident" && data && data.id) {
          window.location.assign("/incidents/" + encodeURIComponent(data.id));
        } else if (then === "reload") {
          window.location.reload();
        } else {
          form.reset();
          say("Saved.");
        }
      } catch (error) {
        say(error.message, true);
      } finally {
        if (button) button.disabled = false;
      }
    });
  });

  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  function newId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  document.querySelectorAll("button[data-ack]").forEach(function (button) {
    button.addEventListener("click", async function () {
      button.disabled = true;
      // Recorded as the provider would: an acknowledgement of the alert, placed by
      // correlation on the incident the alert is attached to.
      const event = {
        specversion: "1.0",
        id: newId(),
        source: "im://console",
        type: "im.alert.acknowledge",
        data: { alert: { key: button.dataset.ack, provider: button.dataset.provider } },
      };
      try {
        await send("/api/v1/timeline/events", event, "application/cloudevents+json");
        window.location.reload();
      } catch (error) {
        say(error.message, true);
        button.disabled = false;
      }
    });
  });

  // --- the live timeline ------------------------------------------------------------

  function text(tag, className, value) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.textContent = value;
    return node;
  }

  function entryNode(entry) {
    const item = document.createElement("li");
    item.className = "entry new vis-" + (entry.visibility || "public");
    item.dataset.position = String(entry.position);
    const head = document.createElement("div");
    head.className = "entry-head";
    const time = text("time", "", entry.event_time);
    time.setAttribute("datetime", entry.event_time);
    head.append(time, " ", text("span", "etype", entry.event_type));
    if (entry.visibility && entry.visibility !== "public") {
      head.append(" ", text("span", "badge vis", entry.visibility));
    }
    if (entry.redaction_applied) head.append(" ", text("span", "badge red", "redacted"));
    item.append(head, text("div", "entry-title", entry.title || entry.event_type));
    if (entry.content) item.append(text("div", "entry-content", entry.content));
    if (entry.actor) item.append(text("div", "entry-actor", "by " + entry.actor));
    return item;
  }

  const timeline = document.getElementById("timeline");
  const live = document.getElementById("live");
  const board = document.getElementById("board");
  let boardTimer = null;

  function refreshBoard() {
    if (!board || !board.dataset.panel) return;
    clearTimeout(boardTimer);
    boardTimer = setTimeout(async function () {
      const response = await fetch(board.dataset.panel, { credentials: "same-origin" });
      if (response.ok) board.innerHTML = await response.text();
    }, 400);
  }

  if (timeline && timeline.dataset.stream && window.EventSource) {
    // Start after the newest position the page was rendered from; on a drop the
    // browser reconnects with Last-Event-ID, which the server resumes after.
    const url = timeline.dataset.stream + "&last_event_id=" + encodeURIComponent(timeline.dataset.head);
    const source = new EventSource(url, { withCredentials: true });
    source.onopen = function () { if (live) live.textContent = "live"; };
    source.onerror = function () {
      if (live) live.textContent = source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…";
    };
    source.onmessage = function (message) {
      let entry;
      try { entry = JSON.parse(message.data); } catch (_) { return; }
      if (timeline.querySelector('[data-position="' + String(entry.position) + '"]')) return;
      timeline.prepend(entryNode(entry));
      refreshBoard();
    };
  }
})();
