// Steward web console: plain JavaScript, no framework, no build step.
//
// Every figure comes from the collector's JSON API (/api/v1/...) with the
// session cookie; writes repeat the session's CSRF token in X-CSRF-Token.
// Text from the API is only ever set with textContent (never innerHTML), and
// links from the API (runbooks) are followed only when they are http(s).
"use strict";

(() => {
  const POLL_MS = 5000;
  const SEVERITIES = ["critical", "major", "minor", "warning", "info"];
  const main = document.getElementById("main");
  let session = null; // {name, scope, csrf_token}
  let generation = 0; // bumped on every navigation; stale loads drop their results
  let pollTimer = null;

  // ---- DOM helpers -------------------------------------------------------
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const text = (value) => (value === null || value === undefined || value === "" ? "—" : String(value));
  function table(headers, rows) {
    return h("div", { class: "table-wrap" },
      h("table", null,
        h("thead", null, h("tr", null, headers.map((header) =>
          typeof header === "string" ? h("th", null, header) : h("th", { class: header.class }, header.label)))),
        h("tbody", null, rows)));
  }
  function safeLink(url, label) {
    try {
      const parsed = new URL(url, location.href);
      if (parsed.protocol === "http:" || parsed.protocol === "https:") {
        return h("a", { href: parsed.href, target: "_blank", rel: "noopener noreferrer" }, label || url);
      }
    } catch (_) { /* not a URL: shown as text */ }
    return document.createTextNode(text(url));
  }

  // ---- time --------------------------------------------------------------
  // Ages and SLA clocks count on the collector's clock: a laptop whose clock
  // is off must not show an SLA as met or overdue wrongly. Every answer's
  // Date header moves the offset (whole seconds, enough for SLAs in minutes).
  let clockOffset = 0;
  const now = () => Date.now() + clockOffset;
  function span(ms) {
    const s = Math.max(0, Math.round(Math.abs(ms) / 1000));
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${s % 60}s`;
    const hours = Math.floor(m / 60);
    if (hours < 48) return `${hours}h ${m % 60}m`;
    return `${Math.floor(hours / 24)}d ${hours % 24}h`;
  }
  const ago = (iso) => (iso ? `${span(now() - Date.parse(iso))} ago` : "—");
  const local = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
  function slaCell(incident) {
    if (incident.state === "resolved") return h("span", { class: "muted" }, incident.sla_breached ? "breached" : "met");
    const due = incident.state === "acknowledged" || incident.acknowledged_at ? incident.resolve_due_at : incident.ack_due_at;
    const kind = incident.acknowledged_at ? "resolve" : "ack";
    if (!due) return h("span", { class: "muted" }, "no SLA");
    const left = Date.parse(due) - now();
    if (left < 0 || incident.sla_breached) return h("span", { class: "late" }, `${kind} overdue ${span(left)}`);
    return h("span", null, `${span(left)} to ${kind}`);
  }

  // ---- API ---------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(path, options = {}) {
    const init = { method: options.method || "GET", credentials: "same-origin", headers: { Accept: "application/json" } };
    if (init.method !== "GET") {
      if (session && session.csrf_token) init.headers["X-CSRF-Token"] = session.csrf_token;
      if (options.body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(options.body);
      }
    }
    const response = await fetch(path, init);
    const served = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(served)) clockOffset = served - Date.now();
    if (response.status === 401 && !options.allowUnauthorized) {
      session = null;
      showLogin("Your session has ended; log in again.");
      throw new ApiError(401, "not logged in");
    }
    if (response.status === 204) return null;
    const body = await response.json().catch(() => null);
    // Errors are {"error": "<stable code>", "message": "<for people>"}.
    if (!response.ok) {
      throw new ApiError(response.status, (body && (body.message || body.error)) || response.statusText);
    }
    // Lists come in pages: X-Next-Cursor names the next one.
    if (options.paged) return { rows: body, next: response.headers.get("X-Next-Cursor") };
    return body;
  }
  // A path segment from an id (ids come from the address bar too).
  const seg = (id) => encodeURIComponent(String(id));
  const canWrite = () => session && (session.scope === "write" || session.scope === "admin");

  // ---- login -------------------------------------------------------------
  function showLogin(message) {
    stopPolling();
    generation++;
    setChrome(false);
    let mode = "token";
    const error = h("p", { class: "error", id: "login-error" }, message || "");
    const fields = h("div");
    const tabs = h("div", { class: "tabs" });
    const form = h("form", { class: "panel login", id: "login" },
      h("h1", null, "Log in to Steward"), tabs, fields,
      h("div", { class: "actions" }, h("button", { class: "primary", type: "submit", id: "login-submit" }, "Log in")),
      error);
    function draw() {
      tabs.replaceChildren(
        h("button", { type: "button", class: mode === "token" ? "chosen" : "", onclick: () => { mode = "token"; draw(); } }, "API token"),
        h("button", { type: "button", class: mode === "user" ? "chosen" : "", id: "login-user-tab", onclick: () => { mode = "user"; draw(); } }, "User and password"));
      fields.replaceChildren(...(mode === "token"
        ? [h("label", { for: "login-token" }, "API token (stw_…)"),
           h("input", { id: "login-token", type: "password", autocomplete: "off", required: true })]
        : [h("label", { for: "login-name" }, "User"),
           h("input", { id: "login-name", autocomplete: "username", required: true }),
           h("label", { for: "login-password" }, "Password"),
           h("input", { id: "login-password", type: "password", autocomplete: "current-password", required: true })]));
    }
    draw();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      const body = mode === "token"
        ? { token: form.querySelector("#login-token").value.trim() }
        : { user: form.querySelector("#login-name").value.trim(), password: form.querySelector("#login-password").value };
      try {
        session = await api("/api/v1/session", { method: "POST", body, allowUnauthorized: true });
        route();
      } catch (failure) {
        error.textContent = failure.status === 429
          ? "Too many failed attempts from this address; wait a little and retry."
          : failure.message;
      }
    });
    main.replaceChildren(form);
    document.body.dataset.view = "login";
  }

  function setChrome(loggedIn) {
    document.getElementById("nav").hidden = !loggedIn;
    document.getElementById("logout").hidden = !loggedIn;
    document.getElementById("live").hidden = !loggedIn;
    document.getElementById("who").textContent = loggedIn ? `${session.name} (${session.scope})` : "";
  }

  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("/api/v1/session", { method: "DELETE", allowUnauthorized: true }); } catch (_) { /* gone anyway */ }
    session = null;
    showLogin("Logged out.");
  });

  // ---- routing and polling -----------------------------------------------
  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }
  // Runs `load` now and every POLL_MS while this view is shown.
  function live(load) {
    const mine = generation;
    const tick = async () => {
      if (mine !== generation) return;
      try {
        await load(mine);
        const stamp = document.getElementById("live");
        stamp.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
      } catch (failure) {
        if (failure.status !== 401 && mine === generation) {
          document.getElementById("live").textContent = `update failed: ${failure.message}`;
        }
      }
    };
    tick();
    pollTimer = setInterval(tick, POLL_MS);
  }

  async function route() {
    stopPolling();
    const mine = ++generation;
    if (!session) {
      try {
        session = await api("/api/v1/session", { allowUnauthorized: true });
      } catch (_) {
        session = null;
      }
      if (mine !== generation) return;
      if (!session) return showLogin();
    }
    setChrome(true);
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    const view = parts[0] || "overview";
    for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.nav === view);
    document.body.dataset.view = view;
    delete document.body.dataset.loaded;
    document.getElementById("live").textContent = "";
    if (view === "incidents" && parts[1]) {
      if (!/^[0-9]+$/.test(parts[1])) return main.replaceChildren(h("p", { class: "error" }, `No incident ${parts[1]}.`));
      return incidentPage(parts[1]);
    }
    if (view === "incidents") return incidentList();
    if (view === "hosts" && parts[1]) return hostPage(parts[1]);
    if (view === "hosts") return hostList();
    if (view === "agent" && parts[1]) return agentRedirect(parts[1]);
    return overview();
  }
  window.addEventListener("hashchange", route);

  function loaded(mine) {
    if (mine === generation) document.body.dataset.loaded = "1";
  }

  // ---- overview ----------------------------------------------------------
  function incidentRows(incidents) {
    return incidents.map((incident) => h("tr", {
      class: "clickable",
      dataset: { incidentId: incident.id, rule: incident.rule, state: incident.state },
      onclick: () => { location.hash = `#/incidents/${incident.id}`; },
    },
    h("td", null, h("span", { class: `sev ${incident.severity}` }, incident.severity)),
    h("td", null, h("a", { href: `#/incidents/${incident.id}` }, incident.summary || incident.rule)),
    h("td", null, incident.host),
    h("td", null, h("span", { class: `state ${incident.state}` }, incident.state)),
    h("td", null, ago(incident.opened_at)),
    h("td", null, slaCell(incident))));
  }
  const INCIDENT_HEADERS = ["Severity", "Incident", "Host", "State", "Age", "SLA"];

  function overview() {
    const body = h("div");
    main.replaceChildren(h("h1", null, "Overview"), body);
    // The collector counts over the whole fleet (GET /api/v1/overview), so no
    // figure here is cut short by a list's page size.
    live(async (mine) => {
      const view = await api("/api/v1/overview?limit=20");
      if (mine !== generation) return;
      const { incidents, agents, assets, oncall, maintenance } = view;
      const bySeverity = incidents.by_severity;
      const more = incidents.unresolved - incidents.most_urgent.length;
      body.replaceChildren(
        h("div", { class: "panel", id: "open-incidents", dataset: { unresolved: incidents.unresolved } },
          h("h2", null, `Open incidents (${incidents.unresolved})`),
          h("div", { class: "cards" }, SEVERITIES.map((severity) =>
            h("div", { class: `card ${bySeverity[severity] ? severity : ""}`, dataset: { severity } },
              h("span", { class: "n" }, bySeverity[severity]), h("span", { class: "l" }, severity))),
            h("div", { class: `card ${incidents.sla_breached ? "bad" : ""}` },
              h("span", { class: "n" }, incidents.sla_breached), h("span", { class: "l" }, "SLA breached")),
            h("div", { class: "card" },
              h("span", { class: "n" }, incidents.acknowledged), h("span", { class: "l" }, "acknowledged")),
            h("div", { class: "card" },
              h("span", { class: "n" }, incidents.suppressed), h("span", { class: "l" }, "suppressed by a parent"))),
          incidents.unresolved
            ? table(INCIDENT_HEADERS, incidentRows(incidents.most_urgent))
            : h("p", { class: "ok" }, "No open incidents."),
          more > 0 ? h("p", null, h("a", { href: "#/incidents" }, `All ${incidents.unresolved} open incidents`)) : null),
        h("div", { class: "grid" },
          h("div", { class: "panel", id: "agents-summary", dataset: { total: agents.total } },
            h("h2", null, `Agents (${agents.total})`),
            h("div", { class: "cards" },
              h("div", { class: "card ok" }, h("span", { class: "n" }, agents.connected), h("span", { class: "l" }, "connected")),
              h("div", { class: `card ${agents.stale ? "minor" : ""}` }, h("span", { class: "n" }, agents.stale),
                h("span", { class: "l" }, `stale (<${Math.round(agents.stale_after_seconds / 60)}m)`)),
              h("div", { class: `card ${agents.missing ? "bad" : ""}` }, h("span", { class: "n" }, agents.missing), h("span", { class: "l" }, "missing")))),
          h("div", { class: "panel", id: "patch-summary" },
            h("h2", null, "Assets needing attention"),
            h("div", { class: "cards" },
              h("div", { class: `card ${assets.security_updates ? "major" : "ok"}` }, h("span", { class: "n" }, assets.security_updates), h("span", { class: "l" }, "security updates")),
              h("div", { class: `card ${assets.reboot_required ? "minor" : "ok"}` }, h("span", { class: "n" }, assets.reboot_required), h("span", { class: "l" }, "reboot required"))),
            h("ul", null, assets.attention.slice(0, 8).map((asset) =>
              h("li", null, h("a", { href: `#/hosts/${seg(asset.id)}` }, asset.hostname || asset.id),
                " ", h("span", { class: "muted" }, [
                  asset.security_updates ? `${asset.security_updates} security updates` : null,
                  ...asset.findings.filter((check) => !(asset.security_updates && check === "security_updates_pending"))
                    .map((check) => check.replaceAll("_", " ")),
                ].filter(Boolean).join(", "))))),
            assets.needing_attention > 8 ? h("p", null, h("a", { href: "#/hosts" }, `All ${assets.needing_attention} hosts needing attention`)) : null),
          h("div", { class: "panel", id: "oncall" },
            h("h2", null, "On call"),
            oncall.length
              ? table(["Schedule", "Now", "Next"], oncall.map((schedule) => h("tr", null,
                h("td", null, schedule.schedule),
                h("td", null, schedule.now ? schedule.now.person : "nobody", schedule.now ? h("div", { class: "muted" }, `until ${local(schedule.now.until)}`) : null),
                h("td", null, schedule.next ? schedule.next.person : "—", schedule.next ? h("div", { class: "muted" }, `from ${local(schedule.next.from)}`) : null))))
              : h("p", { class: "muted" }, "No on-call schedules configured.")),
          h("div", { class: "panel", id: "maintenance" },
            h("h2", null, `Maintenance windows active (${maintenance.length})`),
            maintenance.length
              ? h("ul", null, maintenance.map((window) => h("li", null,
                `${window.reason || "maintenance"} until ${local(window.ends_at)}`,
                h("span", { class: "muted" }, ` (${[...(window.assets || []), ...(window.tags || [])].join(", ") || "all"})`))))
              : h("p", { class: "muted" }, "None."))));
      loaded(mine);
    });
  }

  // ---- incidents ---------------------------------------------------------
  function incidentList() {
    const state = h("select", { id: "filter-state" },
      ["unresolved", "open", "acknowledged", "flapping", "suppressed", "resolved", "all"].map((value) => h("option", { value }, value)));
    const severity = h("select", { id: "filter-severity" }, h("option", { value: "" }, "any severity"),
      SEVERITIES.map((value) => h("option", { value }, value)));
    const host = h("input", { id: "filter-host", placeholder: "host contains…", type: "search" });
    const results = h("div", { class: "panel" }, h("p", { class: "muted" }, "Loading…"));
    // Newest first, PAGE more at a time; every poll re-reads as many as are shown.
    const PAGE = 200;
    let wanted = PAGE;
    let asked = 0; // the newest request; an older answer arriving later is dropped
    let refresh = () => {};
    for (const control of [state, severity]) {
      control.addEventListener("input", () => { wanted = PAGE; refresh(); });
    }
    let typing = null;
    host.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => { wanted = PAGE; refresh(); }, 250);
    });
    main.replaceChildren(h("h1", null, "Incidents"), h("div", { class: "filters" }, state, severity, host), results);
    live(async (mine) => {
      refresh = async () => {
        const params = new URLSearchParams({ limit: String(wanted) });
        if (state.value !== "all") params.set("state", state.value);
        if (severity.value) params.set("severity", severity.value);
        if (host.value.trim()) params.set("host", host.value.trim());
        const request = ++asked;
        const { rows, next } = await api(`/api/v1/incidents?${params}`, { paged: true });
        if (mine !== generation || request !== asked) return;
        const moreButton = next && wanted < 5000
          ? h("button", { type: "button", id: "more-incidents", onclick: () => { wanted += PAGE; refresh(); } },
            `Show ${PAGE} more (${rows.length} shown)`)
          : null;
        results.replaceChildren(rows.length
          ? table(INCIDENT_HEADERS, incidentRows(rows))
          : h("p", { class: "muted" }, "No incidents match."),
        moreButton ? h("div", { class: "actions" }, moreButton) : null);
        loaded(mine);
      };
      await refresh();
    });
  }

  function incidentPage(id) {
    const info = h("div", { class: "panel" }, h("p", { class: "muted" }, "Loading…"));
    const actions = h("div", { class: "actions" });
    const message = h("p", { id: "action-message" });
    const timeline = h("div", { class: "panel" });
    const notifications = h("div", { class: "panel" });
    const noteText = h("textarea", { id: "note-text", placeholder: "Add a note to the timeline…", rows: 2 });
    const writable = canWrite();
    const act = async (path, body, done) => {
      message.className = "";
      message.textContent = "Saving…";
      try {
        await api(path, { method: "POST", body });
        message.textContent = done;
        await load(generation);
      } catch (failure) {
        message.className = "error";
        message.textContent = failure.message;
      }
    };
    const ackButton = h("button", { class: "primary", id: "ack", disabled: !writable,
      onclick: () => act(`/api/v1/incidents/${seg(id)}/ack`, {}, "Acknowledged.") }, "Acknowledge");
    const resolveButton = h("button", { class: "danger", id: "resolve", disabled: !writable,
      onclick: () => act(`/api/v1/incidents/${seg(id)}/resolve`, {}, "Resolved.") }, "Resolve");
    const noteButton = h("button", { id: "add-note", disabled: !writable, onclick: () => {
      const value = noteText.value.trim();
      if (!value) return;
      act(`/api/v1/incidents/${seg(id)}/notes`, { text: value }, "Note added.").then(() => { noteText.value = ""; });
    } }, "Add note");
    main.replaceChildren(
      h("p", null, h("a", { href: "#/incidents" }, "← Incidents")),
      info,
      h("div", { class: "panel" },
        h("h2", null, "Actions"),
        writable ? null : h("p", { class: "muted" }, "Your session has the read scope: acknowledging, resolving and notes need write."),
        actions,
        h("div", { class: "note" }, noteText, noteButton),
        message),
      timeline, notifications);
    async function load(mine) {
      const [incident, sent] = await Promise.all([
        api(`/api/v1/incidents/${seg(id)}`),
        api(`/api/v1/notifications?incident=${seg(id)}&limit=500`),
      ]);
      if (mine !== generation) return;
      const labels = Object.entries(incident.labels || {}).map(([key, value]) => h("span", { class: "tag" }, `${key}=${value}`));
      info.replaceChildren(
        h("h1", null, h("span", { class: `sev ${incident.severity}` }, incident.severity), " ", incident.summary || incident.rule),
        h("dl", { class: "facts" },
          h("dt", null, "State"), h("dd", null, h("span", { class: `state ${incident.state}`, id: "incident-state" }, incident.state)),
          h("dt", null, "Host"), h("dd", null, h("a", { href: `#/agent/${seg(incident.agent_id)}` }, incident.host)),
          h("dt", null, "Rule"), h("dd", null, incident.rule),
          h("dt", null, "Metric"), h("dd", null, incident.metric, " ", labels),
          h("dt", null, "Value at breach"), h("dd", null, text(incident.value)),
          h("dt", null, "Latest value"), h("dd", null, text(incident.last_value)),
          h("dt", null, "Opened"), h("dd", null, `${local(incident.opened_at)} (${ago(incident.opened_at)})`),
          h("dt", null, "Acknowledged"), h("dd", null, incident.acknowledged_at ? `${local(incident.acknowledged_at)} by ${incident.acknowledged_by}` : "—"),
          h("dt", null, "Resolved"), h("dd", null, incident.resolved_at ? `${local(incident.resolved_at)} by ${text(incident.resolved_by)}${incident.resolve_reason ? ` (${incident.resolve_reason})` : ""}` : "—"),
          h("dt", null, "SLA"), h("dd", null, slaCell(incident),
            h("div", { class: "muted" }, `ack due ${local(incident.ack_due_at)} · resolve due ${local(incident.resolve_due_at)}`)),
          h("dt", null, "Runbook"), h("dd", null, incident.runbook ? safeLink(incident.runbook) : "—")));
      ackButton.disabled = !writable || incident.state !== "open";
      resolveButton.disabled = !writable || incident.state === "resolved";
      actions.replaceChildren(ackButton, resolveButton);
      const entries = incident.timeline || [];
      timeline.replaceChildren(h("h2", null, "Timeline"),
        table(["When", "What", "By", "Detail"], entries.map((entry) => h("tr", null,
          h("td", null, local(entry.at)), h("td", null, entry.kind), h("td", null, entry.actor), h("td", null, entry.detail)))));
      notifications.replaceChildren(h("h2", null, `Notifications (${sent.length})`),
        sent.length
          ? table(["Created", "Event", "Channel", "State", "Attempts", { label: "Last error", class: "wide" }], sent.map((row) => h("tr", null,
            h("td", null, local(row.created_at)), h("td", null, row.event), h("td", null, row.channel),
            h("td", null, row.state), h("td", null, row.attempts), h("td", { class: "wide" }, text(row.last_error)))))
          : h("p", { class: "muted" }, "No notifications were sent for this incident."));
      loaded(mine);
    }
    live(load);
  }

  // ---- hosts -------------------------------------------------------------
  function findingTags(findings) {
    return (findings || []).map((finding) => h("span", { class: "tag", title: finding.detail }, finding.check.replaceAll("_", " ")));
  }

  function hostList() {
    const search = h("input", { id: "host-search", type: "search", placeholder: "search host, IP, serial, owner…" });
    const results = h("div", { class: "panel" }, h("p", { class: "muted" }, "Loading…"));
    main.replaceChildren(h("h1", null, "Hosts and assets"), h("div", { class: "filters" }, search), results);
    const mine = generation;
    const PAGE = 500;
    let pending = null;
    let shown = [];
    let next = null; // the cursor after `shown`, for the search it was read with
    let query = "";
    let asked = 0; // the newest request; an older answer arriving later is dropped
    async function load(more) {
      if (more && !next) return;
      const q = more ? query : search.value.trim();
      const params = new URLSearchParams({ limit: String(PAGE), order: "hostname" });
      if (q) params.set("q", q);
      if (more) params.set("cursor", next);
      const request = ++asked;
      const button = document.getElementById("more-hosts");
      if (button) button.disabled = true;
      const page = await api(`/api/v1/assets?${params}`, { paged: true });
      if (mine !== generation || request !== asked) return;
      shown = more ? shown.concat(page.rows) : page.rows;
      next = page.next;
      query = q;
      const assets = shown;
      const moreButton = next
        ? h("div", { class: "actions" }, h("button", { type: "button", id: "more-hosts",
          onclick: () => load(true).catch(() => { const again = document.getElementById("more-hosts"); if (again) again.disabled = false; }) },
          `Show ${PAGE} more (${assets.length} shown)`))
        : null;
      results.replaceChildren(assets.length
        ? table(["Host", "Status", { label: "OS", class: "wide" }, "Seen", "Updates", { label: "Findings", class: "wide" }],
          assets.map((asset) => h("tr", { class: "clickable", dataset: { assetId: asset.id },
            onclick: () => { location.hash = `#/hosts/${seg(asset.id)}`; } },
          h("td", null, h("a", { href: `#/hosts/${seg(asset.id)}` }, asset.hostname || asset.id),
            asset.connected ? h("span", { class: "ok" }, " ●") : h("span", { class: "muted" }, " ○")),
          h("td", null, asset.status),
          h("td", { class: "wide" }, text(asset.os)),
          h("td", null, ago(asset.last_seen)),
          h("td", null, asset.patch && asset.patch.pending !== null && asset.patch.pending !== undefined
            ? `${asset.patch.pending} (${text(asset.patch.security)} security)` : "—"),
          h("td", { class: "wide" }, findingTags(asset.findings)))))
        : h("p", { class: "muted" }, "No assets match."), moreButton);
      loaded(mine);
    }
    search.addEventListener("input", () => {
      clearTimeout(pending);
      pending = setTimeout(() => load(false).catch(() => {}), 250);
    });
    load(false).catch((failure) => { results.replaceChildren(h("p", { class: "error" }, failure.message)); });
  }

  async function agentRedirect(agentId) {
    const mine = generation;
    const [asset] = await api(`/api/v1/assets?agent=${seg(agentId)}&limit=1`);
    if (mine !== generation) return;
    if (asset) location.replace(`#/hosts/${seg(asset.id)}`);
    else main.replaceChildren(h("p", { class: "error" }, `No asset record for agent ${agentId} yet.`));
  }

  // Charts: what to draw for a host, from docs/metrics.md.
  const CHARTS = [
    { id: "cpu", title: "CPU busy (%)", metric: "cpu.usage_percent", labels: "cpu=total", name: () => "all cores" },
    { id: "memory", title: "Memory used (%)", metric: "mem.used_percent", name: () => "used" },
    { id: "disk", title: "Disk used (%)", metric: "disk.used_percent", name: (labels) => labels.mount },
    { id: "network", title: "Network (bytes/s)", metrics: ["net.rx_bytes", "net.tx_bytes"], rate: true,
      name: (labels, metric) => `${labels.iface} ${metric.endsWith("rx_bytes") ? "in" : "out"}` },
    { id: "ping-rtt", title: "Ping round trip (ms)", metric: "ping.rtt_ms", name: (labels) => labels.target },
    { id: "ping-loss", title: "Ping loss (%)", metric: "ping.loss_percent", name: (labels) => labels.target },
    { id: "port", title: "Port connect time (ms)", metric: "port.connect_ms", name: (labels) => labels.target },
  ];
  const RANGES = { "1h": { ms: 3600e3, step: "" }, "24h": { ms: 86400e3, step: "5m" }, "7d": { ms: 7 * 86400e3, step: "30m" } };
  const COLORS = ["#1f6feb", "#d9480f", "#2b8a3e", "#9c36b5", "#c08400", "#0b7285", "#b3122e", "#5f6b7a"];
  let chartRange = "1h";
  // Axis ticks: 1.2k, 3.4M… so large rates fit the axis.
  function compact(value) {
    const size = Math.abs(value);
    for (const [limit, suffix] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
      if (size >= limit) return `${+(value / limit).toFixed(1)}${suffix}`;
    }
    return `${+value.toFixed(2)}`;
  }

  function hostPage(assetId) {
    const mine = generation;
    const head = h("div", { class: "panel" }, h("p", { class: "muted" }, "Loading…"));
    const chartsPanel = h("div", { class: "panel" });
    const details = h("div", { class: "grid" });
    const history = h("div", { class: "panel" });
    main.replaceChildren(h("p", null, h("a", { href: "#/hosts" }, "← Hosts")), head, chartsPanel, details, history);
    (async () => {
      const [asset, events] = await Promise.all([
        api(`/api/v1/assets/${seg(assetId)}`),
        api(`/api/v1/assets/${seg(assetId)}/history?limit=50`),
      ]);
      if (mine !== generation) return;
      // Charts come from one agent: the one streaming now, else the one heard from last.
      const agents = (await Promise.all((asset.agent_ids || []).slice(0, 8).map((id) =>
        api(`/api/v1/agents/${seg(id)}`).catch(() => null)))).filter(Boolean);
      if (mine !== generation) return;
      agents.sort((a, b) => (b.connected - a.connected) || (Date.parse(b.last_seen) - Date.parse(a.last_seen)));
      head.replaceChildren(
        h("h1", null, asset.hostname || asset.id, " ", asset.connected ? h("span", { class: "ok" }, "● connected") : h("span", { class: "muted" }, "○ not connected")),
        h("p", { class: "muted" }, `${text(asset.os)} · ${text(asset.kernel)} · last seen ${ago(asset.last_seen)}`),
        findingTags(asset.findings));
      const gib = (bytes) => (bytes ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : "—");
      const facts = (pairs) => h("dl", { class: "facts" }, pairs.map(([label, value]) => [h("dt", null, label), h("dd", null, text(value))]));
      const patch = asset.patch || {};
      details.replaceChildren(
        h("div", { class: "panel" }, h("h2", null, "Inventory"), facts([
          ["FQDN", asset.fqdn], ["OS", asset.os], ["Kernel", asset.kernel], ["Arch", asset.arch],
          ["CPU", asset.cpu_model ? `${asset.cpu_model} (${text(asset.cpu_cores)} cores, ${text(asset.cpu_threads)} threads)` : null],
          ["Memory", gib(asset.memory_total_bytes)], ["Vendor / model", [asset.vendor, asset.model].filter(Boolean).join(" ")],
          ["Serial", asset.serial], ["IPs", (asset.ips || []).join(", ")], ["Packages", asset.package_count],
          ["Disks", (asset.disks || []).map((disk) => `${disk.mount || disk.device} ${gib(disk.size_bytes)}`).join(", ")],
        ])),
        h("div", { class: "panel" }, h("h2", null, "Patch state"), facts([
          ["Updates pending", patch.pending], ["Of which security", patch.security],
          ["Reboot required", patch.reboot_required === null || patch.reboot_required === undefined ? null : (patch.reboot_required ? "yes" : "no")],
          ["Last update", patch.last_update_age_days === null || patch.last_update_age_days === undefined ? null : `${Number(patch.last_update_age_days).toFixed(1)} days ago`],
          ["Running kernel", patch.running_kernel], ["Newest installed kernel", patch.newest_installed_kernel],
        ])),
        h("div", { class: "panel" }, h("h2", null, "Lifecycle"), facts([
          ["Status", asset.status], ["Owner", asset.owner], ["Location", asset.location], ["Role", asset.role],
          ["Criticality", asset.criticality], ["Purchased", asset.purchase_date], ["Warranty ends", asset.warranty_end],
          ["First seen", local(asset.first_seen)], ["Tags", (asset.tags || []).join(", ")], ["Notes", asset.notes],
        ])));
      history.replaceChildren(h("h2", null, "History"), events.length
        ? table(["When", "Source", "What", "Field", { label: "Before", class: "wide" }, "After"], events.map((event) => h("tr", null,
          h("td", null, local(event.at)), h("td", null, event.source), h("td", null, event.kind), h("td", null, text(event.field)),
          h("td", { class: "wide" }, text(event.before)), h("td", null, text(event.after)))))
        : h("p", { class: "muted" }, "No changes recorded."));
      if (agents.length) await drawCharts(chartsPanel, agents, agents[0].id, mine);
      else chartsPanel.replaceChildren(h("p", { class: "muted" }, "No agent reports for this asset, so there are no charts."));
      loaded(mine);
    })().catch((failure) => {
      if (failure.status !== 401) head.replaceChildren(h("p", { class: "error" }, failure.message));
    });
  }

  async function drawCharts(panel, agents, agentId, mine) {
    const buttons = Object.keys(RANGES).map((range) => h("button", {
      type: "button", class: range === chartRange ? "chosen" : "", dataset: { range },
      onclick: () => { chartRange = range; drawCharts(panel, agents, agentId, mine).catch(() => {}); },
    }, range));
    // A host with several agents (reinstalled, or two on one machine): pick whose charts.
    const agentPicker = agents.length > 1
      ? h("select", { id: "chart-agent", onchange: (event) => drawCharts(panel, agents, event.target.value, mine).catch(() => {}) },
        agents.map((agent) => h("option", { value: agent.id, selected: agent.id === agentId },
          `${agent.id}${agent.connected ? " (connected)" : ` (last seen ${ago(agent.last_seen)})`}`)))
      : null;
    const grid = h("div", { class: "charts" });
    panel.replaceChildren(h("div", { class: "filters" }, h("h2", null, "Last ", chartRange), h("span", { class: "spacer" }),
      agentPicker, h("div", { class: "ranges" }, buttons)), grid);
    panel.dataset.range = chartRange;
    const range = RANGES[chartRange];
    const to = now();
    const from = to - range.ms;
    await Promise.all(CHARTS.map(async (chart) => {
      const box = h("div", { class: "chart", id: `chart-${chart.id}` }, h("h2", null, chart.title));
      grid.append(box);
      const metrics = chart.metrics || [chart.metric];
      const answers = await Promise.all(metrics.map((metric) => {
        const params = new URLSearchParams({ agent: agentId, metric, from: String(from), to: String(to) });
        if (chart.labels) params.set("labels", chart.labels);
        if (range.step) params.set("step", range.step);
        return api(`/api/v1/series/query?${params}`).catch(() => ({ series: [] }));
      }));
      if (mine !== generation) return;
      plot(box, chart, answers.flatMap((answer) => answer.series), from, to);
    }));
  }

  // Counters become per-second rates; a counter that went down (restart) gives no point.
  function rates(points) {
    const out = [];
    for (let i = 1; i < points.length; i++) {
      const dt = (points[i].t - points[i - 1].t) / 1000;
      const dv = points[i].v - points[i - 1].v;
      out.push({ t: points[i].t, v: dt > 0 && dv >= 0 ? dv / dt : null });
    }
    return out;
  }

  function plot(box, chart, series, from, to) {
    const all = series.map((one) => ({
      label: chart.name ? chart.name(one.labels || {}, one.metric) : one.metric,
      points: chart.rate ? rates(one.points) : one.points,
    })).filter((line) => line.points.length);
    if (!all.length || typeof uPlot === "undefined") {
      box.append(h("div", { class: "empty" }, "No data in this range."));
      box.dataset.plotted = "empty";
      return;
    }
    // At most one line per colour: the highest peaks (the fullest disks, the busiest links).
    const peak = (line) => Math.max(...line.points.map((point) => (point.max ?? point.v) ?? -Infinity));
    const lines = all.map((line) => ({ ...line, peak: peak(line) })).sort((a, b) => b.peak - a.peak).slice(0, COLORS.length);
    const times = [...new Set(lines.flatMap((line) => line.points.map((point) => point.t)))].sort((a, b) => a - b);
    const index = new Map(times.map((t, i) => [t, i]));
    const column = (line, pick) => {
      const values = new Array(times.length).fill(null);
      for (const point of line.points) values[index.get(point.t)] = pick(point);
      return values;
    };
    const data = [times.map((t) => t / 1000)];
    const seriesOptions = [{}];
    const bands = [];
    const hidden = [];
    lines.forEach((line, i) => {
      const color = COLORS[i % COLORS.length];
      data.push(column(line, (point) => point.v));
      seriesOptions.push({ label: line.label, stroke: color, width: 1.5, spanGaps: true, points: { show: times.length < 60 } });
      // Per-step answers carry the step's min and max: shade between them.
      const spread = !chart.rate && line.points.some((point) => point.min !== undefined && point.max !== point.min);
      if (spread) {
        const high = data.length;
        data.push(column(line, (point) => point.max), column(line, (point) => point.min));
        seriesOptions.push({ label: `${line.label} max`, stroke: `${color}55`, width: 0.5, spanGaps: true, points: { show: false } },
          { label: `${line.label} min`, stroke: `${color}55`, width: 0.5, spanGaps: true, points: { show: false } });
        bands.push({ series: [high, high + 1], fill: `${color}22` });
        hidden.push(high, high + 1);
      }
    });
    const width = Math.max(280, box.clientWidth || 340);
    const options = {
      width, height: 180,
      scales: { x: { time: true, min: from / 1000, max: to / 1000 } },
      legend: { show: true },
      series: seriesOptions,
      bands,
      axes: [{}, { size: 56, values: (_, ticks) => ticks.map(compact) }],
    };
    const holder = h("div");
    box.append(holder);
    const instance = new uPlot(options, data, holder);
    // The min/max edges of a band are drawn but not listed in the legend.
    const rows = holder.querySelectorAll(".u-legend .u-series");
    for (const i of hidden) if (rows[i]) rows[i].style.display = "none";
    if (all.length > lines.length) {
      box.append(h("p", { class: "muted" }, `${all.length - lines.length} more series with lower peaks are not drawn.`));
    }
    box.dataset.plotted = "1";
    box.dataset.lines = String(lines.length);
    if (bands.length) box.dataset.bands = String(bands.length);
    new ResizeObserver(() => {
      const next = Math.max(280, box.clientWidth);
      if (Math.abs(next - instance.width) > 4) instance.setSize({ width: next, height: 180 });
    }).observe(box);
  }

  route();
})();
