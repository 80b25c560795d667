/* Simpul monitor: refreshes the page from the JSON endpoints and asks before replaying.
 *
 * Every REFRESH_MS it fetches /api/status, /api/dead-letters and /api/throughput and redraws
 * the tables (no page reload). Replay opens a confirmation dialog; the operator token is asked
 * for once and kept in this tab's sessionStorage. Text from Redis is only ever set as text.
 */
(() => {
  "use strict";

  const REFRESH_MS = Math.max(200, Number(document.body.dataset.refreshMs) || 2000);
  const TOKEN_KEY = "simpul-monitor-token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const byId = (id) => document.getElementById(id);

  let replayEnabled = document.body.dataset.replayEnabled === "true";
  let token = readToken();
  let pending = null; // the replay the dialog asks about: {body, what}
  let busy = false;
  let timer = null;
  let inflight = false;
  let again = false;
  let mapLoading = false;

  // -- small helpers ------------------------------------------------------------------------

  function readToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null;
    }
  }

  function keepToken(value) {
    token = value;
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      /* private mode: keep it in memory only */
    }
  }

  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "data") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svgNode(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    return node;
  }

  const numbers = new Intl.NumberFormat("en-US");
  const count = (n) => (n === null || n === undefined ? "\u2013" : numbers.format(n));
  const plural = (n, word) => `${count(n)} ${word}${n === 1 ? "" : "s"}`;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "\u2013";
    if (seconds < 10) return `${seconds.toFixed(1)} s`;
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
    if (seconds < 48 * 3600) return `${(seconds / 3600).toFixed(1)} h`;
    return `${(seconds / 86400).toFixed(1)} d`;
  }

  function clock(iso) {
    const moment = new Date(iso);
    if (Number.isNaN(moment.getTime())) return iso || "\u2013";
    return moment.toLocaleString("en-GB", {
      day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options = {}) {
    const controller = new AbortController();
    const timeout = setTimeout(() => controller.abort(), 10000);
    try {
      let response;
      try {
        response = await fetch(path, {
          cache: "no-store",
          ...options,
          signal: controller.signal,
          headers: { Accept: "application/json", ...(options.headers || {}) },
        });
      } catch (_) {
        throw new ApiError(0, "monitor_unreachable", "the monitor does not answer");
      }
      let body = null;
      try {
        body = await response.json();
      } catch (_) {
        body = null;
      }
      if (!response.ok) {
        const error = (body && body.error) || {};
        throw new ApiError(response.status, error.code || `http_${response.status}`,
          error.message || response.statusText);
      }
      return body;
    } finally {
      clearTimeout(timeout);
    }
  }

  // -- refreshing ---------------------------------------------------------------------------

  async function refresh() {
    if (inflight) {
      again = true;
      return;
    }
    inflight = true;
    clearTimeout(timer);
    try {
      const [status, letters, rates] = await Promise.all([
        api("/api/status"), api("/api/dead-letters"), api("/api/throughput"),
      ]);
      replayEnabled = status.replay_enabled;
      render(status, letters, rates);
      document.body.classList.remove("stale");
      const redis = status.redis;
      setConnection("live", `Live \u00b7 Redis ${redis.version}${redis.where ? ` at ${redis.where}` : ""}`);
      renderFlowProblems(status.flow_problems || []);
      const figure = byId("flowmap");
      if (status.flow_signature && status.flow_signature !== figure.dataset.signature) {
        refreshMap(status.flow_signature);
      }
    } catch (error) {
      document.body.classList.add("stale");
      const down = error.code === "redis_unavailable";
      setConnection("down", down ? "Redis unreachable" : "No answer from the monitor");
      notice("bad", down
        ? `Redis cannot be reached: ${error.message}. The figures below are from the last good snapshot.`
        : `The monitor did not answer (${error.message}). Retrying every ${REFRESH_MS / 1000} s.`);
    } finally {
      inflight = false;
      if (again) {
        again = false;
        refresh();
      } else {
        timer = setTimeout(refresh, REFRESH_MS);
      }
    }
  }

  function setConnection(state, text) {
    const box = byId("connection");
    box.dataset.state = state;
    byId("connection-text").textContent = text;
  }

  function notice(kind, text) {
    const box = byId("notices");
    box.replaceChildren(...(text ? [h("div", { class: `notice ${kind}`, text })] : []));
  }

  // The service modules the flow map could not read (the same banner the page came with).
  function renderFlowProblems(problems) {
    const box = byId("flow-problems");
    if (!problems.length) {
      box.replaceChildren();
      return;
    }
    const items = problems.map((p) => h("li", {}, [h("code", { text: p.module }), `: ${p.error}`]));
    box.replaceChildren(h("div", { class: "notice bad" }, [
      h("strong", { text: "The flow map lacks the code of these modules" }),
      " (their services' consumers are drawn only where Redis shows their groups):",
      h("ul", {}, items),
    ]));
  }

  async function refreshMap(signature) {
    if (mapLoading) return;
    mapLoading = true;
    try {
      const response = await fetch("/api/flowmap.svg", { cache: "no-store" });
      if (!response.ok) return;
      const parsed = new DOMParser().parseFromString(await response.text(), "image/svg+xml");
      const svg = parsed.documentElement;
      if (!svg || svg.nodeName !== "svg") return;
      const figure = byId("flowmap");
      figure.replaceChildren(document.importNode(svg, true));
      figure.dataset.signature = signature;
    } catch (_) {
      /* the next refresh tries again */
    } finally {
      mapLoading = false;
    }
  }

  // -- rendering ----------------------------------------------------------------------------

  function breachIndex(breaches) {
    const index = new Map();
    for (const b of breaches) {
      index.set(`${b.kind}|${b.stream || ""}|${b.group || b.adapter || b.principal || ""}`, b.message);
    }
    return index;
  }

  function render(status, letters, rates) {
    const snap = status.snapshot;
    const index = breachIndex(status.breaches);
    renderSummary(status, letters);
    renderProblems(status);
    renderStreams(snap, index, rates);
    renderRouted(snap, index);
    renderDeadLetters(letters);
    renderQuarantine(snap, index);
    const notes = [];
    if (status.redis.reduced) {
      notes.push(`Redis ${status.redis.version} is older than 7.0: it does not report a group's ` +
        "lag, so lag shows \u2013 unless it is certain (caught up, or nothing read).");
    }
    notice("info", notes.join(" "));
    byId("footer-updated").textContent = `snapshot of ${clock(snap.taken_at)}`;
  }

  function setCard(id, state) {
    const card = byId(id);
    if (card) card.dataset.state = state;
  }

  function renderSummary(status, letters) {
    const snap = status.snapshot;
    const existing = snap.streams.filter((s) => s.exists);
    const groups = existing.flatMap((s) => s.groups);
    const waiting = groups.filter((g) => g.pending || g.lag).length;
    const events = existing.reduce((sum, s) => sum + s.length, 0);
    const quarantined = Object.values(snap.quarantine).reduce((sum, n) => sum + n, 0);
    const problems = status.breaches.length;
    byId("health-text").textContent = problems ? plural(problems, "problem") : "Healthy";
    byId("health-note").textContent = problems ? status.breaches[0].message : "no limit is breached";
    setCard("card-health", problems ? "bad" : "ok");
    byId("count-streams").textContent = count(existing.length);
    byId("count-events").textContent = `${plural(events, "event")} held`;
    byId("count-groups").textContent = count(groups.length);
    byId("count-waiting").textContent = `${count(waiting)} with work waiting`;
    byId("count-dead").textContent = count(letters.total);
    setCard("card-dead", letters.total ? "bad" : "ok");
    byId("count-quarantine").textContent = count(quarantined);
    setCard("card-quarantine", quarantined ? "bad" : "ok");
  }

  function renderProblems(status) {
    const list = byId("problems");
    if (!status.breaches.length) {
      list.replaceChildren(h("li", { class: "ok", text: "Every stream flows: no limit is breached." }));
      return;
    }
    list.replaceChildren(...status.breaches.map((b) => h("li", { data: { kind: b.kind }, text: b.message })));
  }

  function groupState(stream, group, index) {
    const kinds = ["lag", "pending_age", "consumer_idle", "dead_letters"];
    if (kinds.some((k) => index.has(`${k}|${stream}|${group.name}`))) return "bad";
    if (group.pending || group.lag) return "warn";
    return "ok";
  }

  const PILL = { ok: "OK", warn: "Working", bad: "Breach", idle: "Quiet" };

  function pill(state) {
    return h("span", { class: `pill ${state}`, text: PILL[state] });
  }

  function cell(text, { cls = "num", breach = null, warn = false, title = null } = {}) {
    const classes = [cls];
    if (breach) classes.push("bad");
    else if (warn) classes.push("warn");
    return h("td", { class: classes.join(" "), title: breach || title, text });
  }

  function renderStreams(snap, index, rates) {
    const table = byId("streams");
    const bodies = [];
    const unwritten = [];
    for (const s of snap.streams) {
      const orphans = Object.entries(s.dead_letters).filter(([name]) => !s.groups.some((g) => g.name === name));
      if (!s.exists && !orphans.length) {
        unwritten.push(s.aggregate);
        continue;
      }
      const body = h("tbody", { data: { stream: s.aggregate } });
      const silence = index.get(`silence|${s.aggregate}|`);
      const states = s.groups.map((g) => groupState(s.aggregate, g, index));
      if (orphans.some(([, n]) => n) || silence) states.push("bad");
      const worst = states.includes("bad") ? "bad" : states.includes("warn") ? "warn" : s.groups.length ? "ok" : "idle";
      const badges = [];
      if (!s.registered) badges.push(h("span", { class: "badge", title: "no registered contract publishes to this stream", text: "unregistered" }));
      if (!s.exists) badges.push(h("span", { class: "badge", title: "the stream is gone; its dead letters remain", text: "deleted" }));
      const groupsText = s.groups.length ? plural(s.groups.length, "consumer group") : "no consumer group";
      body.append(h("tr", { class: "stream-row", data: { stream: s.aggregate } },
        h("td", { title: s.key }, h("span", { class: "name", text: s.aggregate }), badges),
        h("td", { class: "num", data: { field: "length" }, text: count(s.length) }),
        cell(s.last_entry_age_s === null ? "\u2013" : `${duration(s.last_entry_age_s)} ago`,
          { breach: silence, title: s.last_entry_id ? `newest entry ${s.last_entry_id}` : "no entry" }),
        h("td", {}, sparkline(rates.streams[s.aggregate], rates)),
        h("td", { class: "muted", colspan: 5, text: groupsText }),
        h("td", {}, pill(worst))));
      for (const g of s.groups) {
        const at = (kind) => index.get(`${kind}|${s.aggregate}|${g.name}`);
        const idle = g.consumers.length ? `fastest consumer last read ${duration(Math.min(...g.consumers.map((c) => c.idle_s)))} ago` : "no consumer";
        body.append(h("tr", { class: "group-row", data: { stream: s.aggregate, group: g.name } },
          h("td", {}, h("span", { class: "name", text: g.name })),
          h("td", {}), h("td", {}), h("td", {}),
          cell(count(g.consumer_count), { breach: at("consumer_idle"), title: idle }),
          cell(g.lag === null ? "\u2013" : count(g.lag), {
            breach: at("lag"), warn: g.lag > 0,
            title: g.lag === null ? "Redis < 7.0 cannot tell the lag" : "entries not delivered to the group yet",
          }),
          cell(count(g.pending), { warn: g.pending > 0, title: "delivered, not acknowledged yet" }),
          cell(g.oldest_pending_age_s === null ? "\u2013" : duration(g.oldest_pending_age_s),
            { breach: at("pending_age"), title: g.oldest_pending_id ? `entry ${g.oldest_pending_id}` : null }),
          cell(count(g.dead_letters), { breach: at("dead_letters") }),
          h("td", {}, pill(groupState(s.aggregate, g, index)))));
      }
      for (const [name, depth] of orphans) {
        body.append(h("tr", { class: "group-row", data: { stream: s.aggregate, group: name } },
          h("td", {}, h("span", { class: "name", text: name }),
            h("span", { class: "badge", title: "the consumer group no longer exists", text: "group deleted" })),
          h("td", {}), h("td", {}), h("td", {}), h("td", { class: "num", text: "\u2013" }),
          h("td", { class: "num", text: "\u2013" }), h("td", { class: "num", text: "\u2013" }),
          h("td", { class: "num", text: "\u2013" }),
          cell(count(depth), { breach: index.get(`dead_letters|${s.aggregate}|${name}`) }),
          h("td", {}, pill(depth ? "bad" : "ok"))));
      }
      bodies.push(body);
    }
    if (!bodies.length) {
      bodies.push(h("tbody", {}, h("tr", {}, h("td", { colspan: 10, class: "muted", text: "No stream holds any event yet." }))));
    }
    if (unwritten.length) {
      bodies.push(h("tbody", { class: "unwritten" }, h("tr", {},
        h("td", { colspan: 10, class: "muted small", text: `Registered, nothing published yet: ${unwritten.join(", ")}` }))));
    }
    for (const old of Array.from(table.tBodies)) old.remove();
    table.append(...bodies);
  }

  // Routed delivery (decision 0011): each subscription's inbox under its service, each
  // producer's intake with what the router has not admitted, streams with ids ahead of time.
  function renderRouted(snap, index) {
    const panel = byId("routed");
    const inboxes = snap.inboxes || [];
    const intakes = snap.intakes || [];
    const ahead = snap.ahead_of_time || [];
    panel.hidden = !(inboxes.length || intakes.length || ahead.length);
    if (panel.hidden) return;
    const aheadList = byId("ahead-of-time");
    aheadList.hidden = !ahead.length;
    aheadList.replaceChildren(...ahead.map((a) => h("li", { data: { key: a.key },
      text: `${a.key}: last id ${a.last_generated_id} lies ${duration(a.ahead_s)} ahead of Redis TIME ` +
        "(an explicit far-future id was added; an intake recovers with simpul router reset-intake)" })));

    const services = new Map();
    for (const inbox of inboxes) {
      if (!services.has(inbox.group)) services.set(inbox.group, []);
      services.get(inbox.group).push(inbox);
    }
    const bodies = [];
    for (const [service, own] of services) {
      const body = h("tbody", { data: { service } });
      const states = own.map((i) => inboxState(i, index));
      const worst = states.includes("bad") ? "bad" : states.includes("warn") ? "warn" : states.includes("ok") ? "ok" : "idle";
      body.append(h("tr", { class: "stream-row", data: { service } },
        h("td", {}, h("span", { class: "name", text: service })),
        h("td", { class: "muted", colspan: 6, text: `${count(own.length)} inbox${own.length === 1 ? "" : "es"}` }),
        h("td", {}, pill(worst))));
      for (const i of own) {
        const at = (kind) => index.get(`${kind}|${i.stream}|${i.group}`);
        const g = i.consumer_group;
        const badges = i.exists ? [] : [h("span", { class: "badge", title: "the router has forwarded nothing to it yet", text: "empty" })];
        body.append(h("tr", { class: "group-row inbox-row", data: { inbox: i.key, group: i.group, stream: i.stream } },
          h("td", { title: i.key }, h("span", { class: "name", text: i.stream }), badges),
          h("td", { class: "small", text: i.types.length ? i.types.join(", ") : "\u2013" }),
          cell(g ? count(g.consumer_count) : "not started", {
            breach: at("consumer_idle"), title: g ? null : "the service has not read its inbox yet",
          }),
          cell(!g || g.lag === null ? "\u2013" : count(g.lag), { breach: at("lag"), warn: g && g.lag > 0, title: "entries not delivered to the service yet" }),
          cell(g ? count(g.pending) : "\u2013", { warn: g && g.pending > 0, title: "delivered, not acknowledged yet" }),
          cell(!g || g.oldest_pending_age_s === null ? "\u2013" : duration(g.oldest_pending_age_s), { breach: at("pending_age") }),
          cell(count(i.dead_letters), { breach: at("dead_letters") }),
          h("td", {}, pill(inboxState(i, index)))));
      }
      bodies.push(body);
    }
    if (!bodies.length) {
      bodies.push(h("tbody", {}, h("tr", {}, h("td", { colspan: 8, class: "muted", text: "No inbox yet." }))));
    }
    const inboxTable = byId("inboxes");
    for (const old of Array.from(inboxTable.tBodies)) old.remove();
    inboxTable.append(...bodies);

    const intakeTable = byId("intakes");
    for (const old of Array.from(intakeTable.tBodies)) old.remove();
    intakeTable.append(h("tbody", {}, intakes.length ? intakes.map((i) => {
      const breach = index.get(`intake_backlog||${i.principal}`);
      const state = breach || index.has(`ahead_of_time|${i.key}|`) ? "bad" : i.backlog ? "warn" : "ok";
      return h("tr", { class: "intake-row", data: { principal: i.principal } },
        h("td", { title: i.key }, h("span", { class: "name", text: i.principal }),
          i.router_reading || !i.exists ? null : h("span", { class: "badge", title: "no router has read this intake yet", text: "no router" })),
        cell(count(i.backlog), { breach, warn: i.backlog > 0, title: "entries the router has not admitted (or refused) yet" }),
        cell(i.oldest_age_s === null ? "\u2013" : duration(i.oldest_age_s)),
        cell(count(i.dead_letters), { warn: i.dead_letters > 0, title: `refused by the router: ${i.key}:dlq` }),
        h("td", {}, pill(state)));
    }) : h("tr", {}, h("td", { colspan: 5, class: "muted", text: "No intake yet." }))));
  }

  function inboxState(inbox, index) {
    const kinds = ["lag", "pending_age", "consumer_idle", "dead_letters"];
    if (kinds.some((k) => index.has(`${k}|${inbox.stream}|${inbox.group}`))) return "bad";
    const g = inbox.consumer_group;
    if (!g) return inbox.length ? "warn" : "idle";
    if (g.pending || g.lag) return "warn";
    return "ok";
  }

  function sparkline(series, rates) {
    const width = 132;
    const height = 28;
    const svg = svgNode("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    const box = h("div", { class: "spark" }, svg);
    svg.append(svgNode("line", { x1: 0, y1: height - 1, x2: width, y2: height - 1, stroke: "#d9dee4" }));
    if (!series || !series.points.length) {
      svg.setAttribute("aria-label", "no samples yet");
      box.append(h("span", { class: "rate", text: "sampling\u2026" }));
      return box;
    }
    const points = series.points;
    const sampleMs = rates.sample_s * 1000;
    const last = points[points.length - 1][0];
    const start = Math.max(points[0][0] - sampleMs, last - rates.window_s * 1000);
    const span = Math.max(last - start, 1);
    const top = Math.max(1, ...points.map((p) => p[1]));
    const xy = points.map(([at, n]) => [
      ((at - start) / span) * (width - 2) + 1,
      height - 2 - (n / top) * (height - 5),
    ]);
    const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
    const area = `${xy[0][0].toFixed(1)},${height - 1} ${line} ${xy[xy.length - 1][0].toFixed(1)},${height - 1}`;
    svg.append(svgNode("polygon", { points: area, fill: "#1c6fb8", "fill-opacity": 0.14 }));
    svg.append(svgNode("polyline", { points: line, fill: "none", stroke: "#1c6fb8", "stroke-width": 1.6, "stroke-linejoin": "round" }));
    const [lx, ly] = xy[xy.length - 1];
    svg.append(svgNode("circle", { cx: lx.toFixed(1), cy: ly.toFixed(1), r: 2.2, fill: "#1c6fb8" }));
    const summary = `${plural(series.total, "event")} in the last ${duration(span / 1000)}` +
      ` (at most ${count(top)} per ${rates.sample_s} s sample)${series.exact ? "" : ", approximate"}`;
    const title = svgNode("title", {});
    title.textContent = summary;
    svg.append(title);
    svg.setAttribute("aria-label", summary);
    box.append(h("span", { class: "rate", data: { perMin: series.per_min }, text: `${count(series.per_min)}/min` }));
    return box;
  }

  let shownLetters = "";

  function renderDeadLetters(letters) {
    const root = byId("dead-letters");
    // Redrawn only when something changed: a button must not vanish under the operator's click.
    const key = JSON.stringify([letters, replayEnabled]);
    if (key === shownLetters) return;
    shownLetters = key;
    if (!letters.queues.length) {
      root.replaceChildren(h("p", { class: "empty-ok", text: "No dead letters: every group handled what it received." }));
      return;
    }
    const disabled = replayEnabled ? null : "Replay is disabled: the monitor runs without SIMPUL_MONITOR_TOKEN";
    root.replaceChildren(...letters.queues.map((q) => {
      const complete = q.total <= q.shown;
      const newest = q.dead_letters[q.dead_letters.length - 1].id;
      const all = h("button", {
        type: "button", class: "button danger replay-group", disabled: !!disabled, title: disabled,
        data: { stream: q.stream, aggregate: q.aggregate, group: q.group, total: q.total, upto: complete ? newest : "" },
        text: complete ? `Replay all ${count(q.total)}` : `Replay the oldest ${count(Math.min(q.total, 500))}`,
      });
      const rows = q.dead_letters.map((d) => h("tr", {
        class: "dead-letter", data: { stream: q.stream, aggregate: q.aggregate, group: q.group, id: d.id },
      },
        h("td", { title: d.time || "", text: clock(d.time) }),
        h("td", {}, h("code", { text: d.type || "\u2013" })),
        h("td", {}, h("code", { text: d.event_id || "\u2013" })),
        h("td", { text: d.reason }),
        h("td", { class: "num", text: d.attempts === null ? "\u2013" : count(d.attempts) }),
        h("td", { class: "error-cell", text: d.error || "\u2013" }),
        h("td", {}, h("button", {
          type: "button", class: "button replay", disabled: !!disabled, title: disabled,
          data: { stream: q.stream, aggregate: q.aggregate, group: q.group, id: d.id, type: d.type || "" },
          text: "Replay",
        }))));
      const table = h("table", { class: "grid" },
        h("thead", {}, h("tr", {},
          ["Dead-lettered", "Event type", "Event id", "Reason", "Attempts", "Error (masked)", ""].map(
            (name, i) => h("th", { scope: "col", class: i === 4 ? "num" : null, text: name })))),
        h("tbody", {}, rows));
      const more = complete ? null : h("div", { class: "more",
        text: `Showing the oldest ${count(q.shown)} of ${count(q.total)}. ` +
          `simpul dlq list ${q.aggregate} ${q.group} lists them all.` });
      return h("div", { class: "queue", data: { stream: q.aggregate, group: q.group } },
        h("div", { class: "queue-head" },
          h("div", { class: "title" }, q.aggregate, h("span", { class: "arrow", text: "\u2192" }), q.group,
            h("span", { class: "muted", text: ` \u00b7 ${plural(q.total, "dead letter")}` })),
          all),
        table, more);
    }));
  }

  function renderQuarantine(snap, index) {
    const root = byId("quarantine");
    const adapters = Object.entries(snap.quarantine);
    if (!adapters.some(([, n]) => n)) {
      root.replaceChildren(h("p", { class: "empty-ok", text: "No adapter has records in quarantine." }));
      return;
    }
    root.replaceChildren(h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Adapter" }),
        h("th", { scope: "col", class: "num", text: "Records" }), h("th", { scope: "col", text: "Look at them" }))),
      h("tbody", {}, adapters.map(([adapter, depth]) => h("tr", { data: { adapter } },
        h("td", { text: adapter }),
        cell(count(depth), { breach: index.get(`quarantine||${adapter}`) }),
        h("td", {}, h("code", { text: `simpul quarantine list ${adapter}` })))))));
  }

  // -- replay -------------------------------------------------------------------------------

  const dialog = byId("confirm-dialog");
  const tokenInput = byId("token-input");
  const confirmButton = byId("confirm-replay");

  function openConfirm(button) {
    const data = button.dataset;
    if (button.classList.contains("replay-group")) {
      const body = { stream: data.stream, group: data.group };
      if (data.upto) body.upto = data.upto;
      const total = Number(data.total);
      pending = { body };
      byId("confirm-title").textContent = `Replay ${plural(total, "dead letter")}?`;
      byId("confirm-text").textContent = data.upto
        ? `All ${plural(total, "dead letter")} of group ${data.group} on ${data.aggregate} go back to ${data.group}. No other group sees them.`
        : `The oldest ${count(Math.min(total, 500))} of ${plural(total, "dead letter")} of group ${data.group} on ${data.aggregate} go back to ${data.group}. No other group sees them.`;
    } else {
      pending = { body: { refs: [{ stream: data.stream, group: data.group, id: data.id }] } };
      byId("confirm-title").textContent = "Replay this dead letter?";
      byId("confirm-text").textContent =
        `Dead letter ${data.id}${data.type ? ` (${data.type})` : ""} goes back to group ${data.group} on ${data.aggregate}. No other group sees it.`;
    }
    byId("token-field").hidden = Boolean(token);
    tokenInput.value = "";
    showDialogError(null);
    confirmButton.disabled = false;
    confirmButton.textContent = "Replay";
    dialog.showModal();
    (token ? byId("confirm-cancel") : tokenInput).focus();
  }

  function showDialogError(text) {
    const box = byId("confirm-error");
    box.hidden = !text;
    box.textContent = text || "";
  }

  async function confirmReplay(event) {
    event.preventDefault();
    if (busy || !pending) return;
    const candidate = token || tokenInput.value.trim();
    if (!candidate) {
      showDialogError("Enter the operator token (SIMPUL_MONITOR_TOKEN).");
      tokenInput.focus();
      return;
    }
    busy = true;
    confirmButton.disabled = true;
    confirmButton.textContent = "Replaying\u2026";
    try {
      const report = await api("/api/replay", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${candidate}` },
        body: JSON.stringify(pending.body),
      });
      keepToken(candidate);
      pending = null;
      dialog.close();
      showOutcome(report);
    } catch (error) {
      if (error.status === 401) {
        keepToken(null);
        byId("token-field").hidden = false;
        tokenInput.value = "";
        showDialogError("The token was not accepted. Enter the operator token (SIMPUL_MONITOR_TOKEN).");
        tokenInput.focus();
      } else if (error.status === 404) {
        pending = null;
        dialog.close();
        showOutcome(null, `Nothing replayed: ${error.message}`);
      } else {
        showDialogError(`Not replayed: ${error.message}`);
      }
    } finally {
      busy = false;
      confirmButton.disabled = false;
      confirmButton.textContent = "Replay";
      refresh();
    }
  }

  function showOutcome(report, failure) {
    const box = byId("outcome");
    const details = byId("outcome-details");
    if (!report) {
      box.className = "outcome bad";
      byId("outcome-title").textContent = failure;
      details.replaceChildren();
    } else {
      const counts = report.counts || {};
      const parts = Object.entries(counts).map(([outcome, n]) => `${count(n)} ${outcome.replace("_", " ")}`);
      box.className = `outcome ${report.ok ? "ok" : "warn"}`;
      byId("outcome-title").textContent = report.ok && counts.replayed
        ? `Replayed ${plural(counts.replayed, "dead letter")}.`
        : `Replay: ${parts.join(", ") || "nothing to do"}.`;
      const shown = report.results.slice(0, 5).map((r) => h("li", { data: { outcome: r.outcome }, text: r.detail }));
      if (report.results.length > 5) shown.push(h("li", { text: `and ${count(report.results.length - 5)} more` }));
      if (report.not_selected) shown.push(h("li", { text: `${plural(report.not_selected, "dead letter")} left for another replay` }));
      details.replaceChildren(...shown);
    }
    box.hidden = false;
  }

  // -- wiring -------------------------------------------------------------------------------

  byId("dead-letters").addEventListener("click", (event) => {
    const button = event.target.closest("button.replay, button.replay-group");
    if (button && !button.disabled) openConfirm(button);
  });
  byId("confirm-form").addEventListener("submit", confirmReplay);
  byId("confirm-cancel").addEventListener("click", () => {
    pending = null;
    dialog.close();
  });
  dialog.addEventListener("close", () => {
    pending = null;
  });
  byId("outcome-close").addEventListener("click", () => {
    byId("outcome").hidden = true;
  });

  refresh();
})();
