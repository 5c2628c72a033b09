// The presence dashboard: counts, a chart of the online count, the busiest
// rooms, the newest users (of all, or of the room clicked) page by page,
// and search by ID. It reads the JSON API relative to this page's URL.
// While the event stream (api/events) is open, every event refreshes the
// page (at most once per EVENT_DELAY_MS), and a slow poll catches what
// events do not report (an online user seen again, a user leaving a short
// window, the chart); without the stream (a backend without events, a
// proxy that breaks it) the page polls every few seconds. User data is
// only ever set as text, never as HTML.
"use strict";

const POLL_MS = 5000;       // without the event stream
const LIVE_POLL_MS = 30000; // with it
const EVENT_DELAY_MS = 100; // events within this share one refresh
const PAGE_SIZE = 20;
let skew = 0;          // server clock minus browser clock, ms
let cursors = [""];    // cursor of each page walked so far; the last is shown
let nextCursor = "";
let room = "";         // the room whose members the table shows; "" for all users

const $ = (id) => document.getElementById(id);

async function getJSON(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (resp.status === 404) return null;
  if (!resp.ok) throw new Error(path.split("?")[0] + ": HTTP " + resp.status);
  return resp.json();
}

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() + skew - Date.parse(iso)) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s ago";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
  return Math.floor(s / 86400) + " d ago";
}

function label(seconds) {
  if (seconds % 86400 === 0) return seconds / 86400 + " d";
  if (seconds % 3600 === 0) return seconds / 3600 + " h";
  if (seconds % 60 === 0) return seconds / 60 + " min";
  return seconds + " s";
}

async function loadCounts() {
  const data = await getJSON("api/counts");
  skew = Date.parse(data.now) - Date.now();
  const box = $("counts");
  box.replaceChildren(...data.counts.map((c) => {
    const div = document.createElement("div");
    div.className = "count";
    div.dataset.window = c.window;
    const n = document.createElement("div");
    n.className = "n";
    n.textContent = c.count.toLocaleString("en-US");
    n.dataset.count = String(c.count);
    const w = document.createElement("div");
    w.className = "w";
    w.textContent = "seen in the last " + label(c.seconds);
    div.append(n, w);
    return div;
  }));
}

async function loadUsers() {
  const cursor = cursors[cursors.length - 1];
  const params = new URLSearchParams({ window: $("window").value, limit: String(PAGE_SIZE) });
  if (cursor) params.set("cursor", cursor);
  if (room) params.set("room", room);
  const data = await getJSON("api/users?" + params);
  nextCursor = data.next;
  $("users").replaceChildren(...data.users.map((u) => {
    const tr = document.createElement("tr");
    const id = document.createElement("td");
    id.className = "id";
    id.textContent = u.id;
    const seen = document.createElement("td");
    seen.className = "seen";
    seen.textContent = ago(u.last_seen);
    seen.title = u.last_seen;
    const meta = document.createElement("td");
    meta.className = "meta";
    meta.textContent = u.meta || "";
    tr.append(id, seen, meta);
    return tr;
  }));
  $("users-title").textContent = room ? "In room " + room : "Recent users";
  $("all").hidden = !room;
  $("page").textContent = "page " + cursors.length;
  $("prev").disabled = cursors.length === 1;
  $("next").disabled = !nextCursor;
}

async function loadRooms() {
  const data = await getJSON("api/rooms?" + new URLSearchParams({ window: $("window").value, limit: "10" }));
  $("rooms-card").hidden = !data; // 404: the backend keeps no rooms
  if (!data) return;
  $("rooms").replaceChildren(...data.rooms.map((r) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "room";
    b.textContent = r.room;
    b.dataset.room = r.room;
    b.addEventListener("click", () => showRoom(r.room));
    const n = document.createElement("span");
    n.className = "n";
    n.textContent = " " + r.count.toLocaleString("en-US");
    n.dataset.count = String(r.count);
    li.append(b, n);
    return li;
  }));
}

function showRoom(name) {
  room = name;
  cursors = [""];
  loadUsers().catch((err) => { $("status").textContent = String(err.message || err); });
}

async function loadChart() {
  const data = await getJSON("api/history");
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24;
  ctx.clearRect(0, 0, w, h);
  const style = getComputedStyle(document.body);
  ctx.strokeStyle = style.getPropertyValue("--line");
  ctx.fillStyle = style.getPropertyValue("--fg");
  ctx.font = "12px system-ui, sans-serif";
  const end = Date.now() + skew, start = end - 3600 * 1000;
  const pts = data.points.filter((p) => Date.parse(p.t) >= start);
  const top = Math.max(1, ...pts.map((p) => p.count));
  ctx.beginPath();
  ctx.moveTo(pad, h - pad);
  ctx.lineTo(w, h - pad);
  ctx.stroke();
  ctx.fillText(top.toLocaleString("en-US"), 2, 14);
  ctx.fillText("0", 2, h - pad);
  ctx.fillText("1 h ago", pad, h - 6);
  ctx.fillText("now", w - 28, h - 6);
  if (pts.length === 0) return;
  ctx.strokeStyle = style.getPropertyValue("--accent");
  ctx.lineWidth = 2;
  const xy = (p) => [pad + ((Date.parse(p.t) - start) / (end - start)) * (w - pad),
                    h - pad - (p.count / top) * (h - 2 * pad)];
  ctx.beginPath();
  pts.forEach((p, i) => {
    const [x, y] = xy(p);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = style.getPropertyValue("--accent");
  for (const p of pts) { // a dot per sample, so that one sample shows too
    const [x, y] = xy(p);
    ctx.fillRect(x - 2, y - 2, 4, 4);
  }
}

let live = false;      // the event stream is open
let lastRefresh = 0;   // Date.now() of the last refresh's start
let pending = null;    // the timer of a refresh an event asked for

async function refresh() {
  lastRefresh = Date.now();
  try {
    await loadCounts();
    await Promise.all([loadUsers(), loadChart(), loadRooms()]);
    $("status").textContent = (live ? "live, updated " : "updated ") + new Date().toLocaleTimeString();
    $("status").className = "status";
    document.body.dataset.ready = "true";
  } catch (err) {
    $("status").textContent = String(err.message || err);
    $("status").className = "status error";
  }
}

$("next").addEventListener("click", () => {
  if (!nextCursor) return;
  cursors.push(nextCursor);
  loadUsers().catch((err) => { $("status").textContent = String(err.message || err); });
});
$("prev").addEventListener("click", () => {
  if (cursors.length > 1) cursors.pop();
  loadUsers().catch((err) => { $("status").textContent = String(err.message || err); });
});
$("all").addEventListener("click", () => showRoom(""));
$("window").addEventListener("change", () => {
  cursors = [""];
  loadUsers().catch((err) => { $("status").textContent = String(err.message || err); });
});
$("search").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = $("search-id").value.trim();
  const out = $("found");
  out.hidden = false;
  if (!id) { out.textContent = "Type an ID."; return; }
  try {
    const u = await getJSON("api/user?id=" + encodeURIComponent(id));
    out.textContent = u ? u.id + " was last seen " + ago(u.last_seen) + " (" + u.last_seen + ")"
                        : id + " has not been seen.";
    out.dataset.found = u ? "true" : "false";
  } catch (err) {
    out.textContent = String(err.message || err);
  }
});

// listen follows api/events. EventSource reconnects by itself after a
// network error (sending the last event's id, so nothing is missed); a
// 404 or 403 closes it for good, and the page keeps polling.
function listen() {
  if (typeof EventSource === "undefined") return;
  const es = new EventSource("api/events");
  es.onopen = () => { live = true; document.body.dataset.live = "true"; };
  es.onerror = () => { live = false; document.body.dataset.live = "false"; };
  const changed = () => {
    if (pending === null) pending = setTimeout(() => { pending = null; refresh(); }, EVENT_DELAY_MS);
  };
  for (const kind of ["online", "offline", "join", "leave", "overflow"]) es.addEventListener(kind, changed);
}

refresh();
listen();
setInterval(() => {
  if (Date.now() - lastRefresh >= (live ? LIVE_POLL_MS : POLL_MS) - 100) refresh();
}, POLL_MS);
