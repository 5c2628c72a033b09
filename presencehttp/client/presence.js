// presence.js: who is here now, live. An ES module with no dependencies
// and no build step, served by presencehttp.Live at /client.js.
//
//   import { join } from "/live/client.js";
//   const room = join("/live/doc-42", {
//     data: { name: "Alice" },                    // this viewer's presence data (JSON)
//     onChange(members, self) { render(members) }, // [{id, data, conns}], and this viewer's ID
//     onCount(n) { showCount(n) },                // a room too big to list
//   });
//   room.update({ name: "Alice", typing: true });  // every viewer sees it
//   room.leave();
//
// It reconnects by itself (with the latest data), and each connection
// starts from a fresh state. Leaving the page leaves the room.
export function join(url, { data = null, onChange = () => {}, onCount = () => {}, onStatus = () => {} } = {}) {
  url = url.replace(/\/+$/, "");
  let es = null, conn = null, self = null, left = false, timer = null, retry = 500;
  let members = new Map();
  const emit = () => onChange([...members.values()], self);

  function connect() {
    if (left) return;
    const q = data === null ? "" : "?data=" + encodeURIComponent(JSON.stringify(data));
    es = new EventSource(url + "/events" + q);
    es.addEventListener("state", (e) => {
      const s = JSON.parse(e.data);
      retry = 500;
      conn = s.conn;
      self = s.self;
      members = new Map(s.members.map((m) => [m.id, m]));
      onStatus("live");
      emit();
    });
    es.addEventListener("diff", (e) => {
      const d = JSON.parse(e.data);
      for (const m of d.leaves) members.delete(m.id);
      for (const m of d.joins) members.set(m.id, m);
      emit();
    });
    es.addEventListener("count", (e) => {
      const c = JSON.parse(e.data);
      conn = c.conn;
      self = c.self;
      members = new Map();
      onStatus("live");
      onCount(c.count);
    });
    es.onerror = () => {
      es.close();
      conn = null;
      onStatus("reconnecting");
      timer = setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  connect();
  // A page left (closed, or navigated away from) leaves the room at once,
  // and one restored from the back-forward cache joins it again.
  const hide = () => { if (es) es.close(); clearTimeout(timer); };
  const show = (e) => { if (e.persisted && !left) connect(); };
  addEventListener("pagehide", hide);
  addEventListener("pageshow", show);

  return {
    members: () => [...members.values()],
    // update replaces this viewer's data; while reconnecting, it is sent
    // with the next connection.
    async update(next) {
      data = next;
      if (conn === null) return;
      const r = await fetch(url + "/data?conn=" + encodeURIComponent(conn), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(next),
      });
      if (!r.ok) throw new Error("presence: update: " + r.status);
    },
    leave() {
      left = true;
      hide();
      removeEventListener("pagehide", hide);
      removeEventListener("pageshow", show);
    },
  };
}
