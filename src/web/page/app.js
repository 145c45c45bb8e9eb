// tlschat web client: the line protocol over a WebSocket on the page's own origin.
// Everything from the server is inserted as text (textContent), never as HTML.
"use strict";

const LOBBY = "#lobby";
const MAX_LINES_PER_ROOM = 2000;
const MAX_INPUT_HISTORY = 100;
const RECONNECT_FIRST_MS = 1000;
const RECONNECT_MAX_MS = 30000;
// Lines after which the server has closed for good: reconnecting would not help.
const FINAL_LINES = [
  "*** Bye",
  "! You signed in elsewhere; closing this session",
  "! Too many failed logins",
];
const FINAL_PREFIXES = ["! You were removed by an administrator", "! Your account was changed"];

const $ = (id) => document.getElementById(id);

const state = {
  ws: null,
  user: "",
  password: "", // kept in this page's memory only, for logging in again after a drop
  phase: "out", // out | login | chat
  rooms: new Map(), // name -> { lines: [], unread: 0, members: Set }
  current: LOBBY,
  shown: LOBBY,
  block: null, // room of the history or catch-up block being received
  numbers: new Map(), // room -> number of the last message shown, sent with /resume at login
  resumeSent: false, // this connection has asked for numbered lines
  final: false,
  reconnecting: false, // logging in again after a drop, with the kept password
  retryMs: RECONNECT_FIRST_MS,
  retryTimer: null,
  sent: [],
  sentAt: 0,
  draft: "",
};

function room(name) {
  let r = state.rooms.get(name);
  if (!r) {
    r = { lines: [], unread: 0, members: new Set() };
    state.rooms.set(name, r);
    renderRooms();
  }
  return r;
}

function colourClass(name) {
  let h = 0;
  for (const ch of name.toLowerCase()) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return "c" + (h % 12);
}

function nameSpan(name) {
  const s = document.createElement("span");
  s.className = "name " + colourClass(name);
  s.textContent = name;
  return s;
}

// One line as a list item: time, coloured name and text, each set as text.
function lineItem(text, time, kind) {
  const li = document.createElement("li");
  if (kind) li.className = kind;
  if (time) {
    const t = document.createElement("time");
    t.className = "time";
    t.dateTime = time.replace(" ", "T") + "Z";
    t.textContent = time;
    li.append(t);
  }
  let m;
  if ((m = /^<([^>\s]+)> ([\s\S]*)$/.exec(text))) {
    li.append("<", nameSpan(m[1]), "> " + m[2]);
  } else if ((m = /^\* (\S+) ([\s\S]*)$/.exec(text))) {
    li.append("* ", nameSpan(m[1]), " " + m[2]);
  } else if ((m = /^(-> )?\*([^*\s]+)\* ([\s\S]*)$/.exec(text))) {
    li.classList.add("private");
    li.append((m[1] || "") + "*", nameSpan(m[2]), "* " + m[3]);
  } else {
    if (text.startsWith("! ")) li.classList.add("err");
    else if (text.startsWith("*** ")) li.classList.add("notice");
    li.textContent = text;
  }
  return li;
}

function addLine(name, text, time, kind) {
  const r = room(name);
  r.lines.push({ text, time, kind });
  if (r.lines.length > MAX_LINES_PER_ROOM) r.lines.shift();
  if (name === state.shown) {
    const log = $("log");
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(lineItem(text, time, kind));
    while (log.children.length > MAX_LINES_PER_ROOM) log.firstChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  } else if (kind !== "separator") {
    r.unread += 1;
    renderRooms();
  }
}

function renderRooms() {
  const list = $("room-list");
  list.replaceChildren();
  const names = [...state.rooms.keys()].sort((a, b) =>
    a === LOBBY ? -1 : b === LOBBY ? 1 : a.localeCompare(b));
  for (const name of names) {
    const r = state.rooms.get(name);
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "room";
    b.dataset.room = name;
    b.setAttribute("aria-current", String(name === state.shown));
    const label = document.createElement("span");
    label.textContent = name;
    b.append(label);
    if (r.unread > 0) {
      const u = document.createElement("span");
      u.className = "unread";
      u.textContent = String(r.unread);
      u.setAttribute("aria-label", r.unread + " unread");
      b.append(u);
    }
    b.addEventListener("click", () => choose(name));
    li.append(b);
    list.append(li);
  }
}

function renderPeople() {
  const r = room(state.shown);
  const list = $("people-list");
  list.replaceChildren();
  const names = [...r.members].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  for (const n of names) {
    const li = document.createElement("li");
    li.append(nameSpan(n));
    list.append(li);
  }
  $("people-title").textContent = names.length + " online in " + state.shown;
}

function show(name) {
  state.shown = name;
  const r = room(name);
  r.unread = 0;
  $("room-title").textContent = name;
  const log = $("log");
  log.replaceChildren(...r.lines.map((l) => lineItem(l.text, l.time, l.kind)));
  log.scrollTop = log.scrollHeight;
  renderRooms();
  renderPeople();
}

// Choosing a room makes it the current one on the server too.
function choose(name) {
  if (name !== state.current) send("/join " + name);
  show(name);
  $("message").focus();
}

function setMembers(name, list) {
  const r = room(name);
  r.members = new Set(list ? list.split(", ").filter(Boolean) : []);
  if (name === state.shown) renderPeople();
}

function memberJoined(name, who) {
  room(name).members.add(who);
  if (name === state.shown) renderPeople();
}

function memberLeft(name, who) {
  // Leaving #lobby means leaving the server: every room drops the member.
  const rooms = name === LOBBY ? [...state.rooms.values()] : [room(name)];
  for (const r of rooms) r.members.delete(who);
  renderPeople();
}

function status(text) {
  $("status").textContent = text;
}

function send(line) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(line);
}

function connect() {
  clearTimeout(state.retryTimer);
  state.final = false;
  state.phase = "login";
  state.block = null;
  state.resumeSent = false;
  status("Connecting…");
  const ws = new WebSocket("wss://" + location.host + "/ws");
  state.ws = ws;
  let partial = "";
  ws.addEventListener("message", (ev) => {
    if (typeof ev.data !== "string") return;
    const lines = (partial + ev.data).split("\n");
    partial = lines.pop();
    for (const line of lines) receive(line.replace(/\r$/, ""));
  });
  ws.addEventListener("close", () => {
    if (state.ws !== ws) return;
    state.ws = null;
    if (state.phase === "chat" && !state.final) {
      for (const name of state.rooms.keys()) addLine(name, "— connection lost —", null, "separator");
      scheduleReconnect();
    } else if (state.phase === "login" && state.reconnecting) {
      scheduleReconnect();
    } else if (state.phase === "login") {
      loginFailed($("login-error").textContent || "The connection closed.");
    } else {
      status("Disconnected");
    }
  });
}

function scheduleReconnect() {
  const wait = Math.min(state.retryMs, RECONNECT_MAX_MS) * (0.5 + Math.random() / 2);
  state.retryMs = Math.min(state.retryMs * 2, RECONNECT_MAX_MS);
  state.reconnecting = true;
  state.phase = "out";
  status("Connection lost; reconnecting in " + Math.ceil(wait / 1000) + " s…");
  state.retryTimer = setTimeout(connect, wait);
}

function loginFailed(message) {
  state.phase = "out";
  state.reconnecting = false;
  state.password = "";
  if (state.ws) state.ws.close();
  state.ws = null;
  $("chat-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message;
  $("login-button").disabled = false;
  $("password").value = "";
  $("password").focus();
}

// The line without its number, which is noted as shown (see "Numbered lines" in the protocol).
const NUMBERED = /^@(#[a-z0-9][a-z0-9_.-]{0,31}):(\d+) ([\s\S]*)$/;
function unnumber(line) {
  const m = NUMBERED.exec(line);
  if (!m) return line;
  state.numbers.set(m[1], Number(m[2]));
  return m[3];
}

// Asks for numbered lines and a catch-up right after what this page has shown.
function resumeLine() {
  let line = "/resume";
  for (const [name, seq] of state.numbers) line += " " + name + " " + seq;
  return line;
}

function receive(line) {
  if (state.phase === "login") return receiveLogin(line);
  line = unnumber(line);
  if (FINAL_LINES.includes(line) || FINAL_PREFIXES.some((p) => line.startsWith(p))) {
    state.final = true;
    status("Disconnected");
  }
  route(line);
}

function receiveLogin(line) {
  if (line === "Username:" && !state.resumeSent) {
    state.resumeSent = true;
    return send(resumeLine());
  }
  if (line === "Username:") return send(state.user);
  if (line === "*** Numbered lines on" || line.startsWith("! Usage: /resume")) return;
  if (line === "Password:") return send(state.password);
  if (line === "! Login failed") return loginFailed("Login failed: check the username and password.");
  if (line.startsWith("! ")) return loginFailed(line.slice(2));
  const m = /^\*\*\* Welcome, ([^!]+)! \d+ online: (.*)$/.exec(line);
  if (!m) return;
  const reconnected = state.rooms.size > 0;
  state.phase = "chat";
  state.reconnecting = false;
  state.user = m[1];
  state.retryMs = RECONNECT_FIRST_MS;
  state.current = LOBBY;
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  $("password").value = "";
  status("Logged in as " + state.user);
  setMembers(LOBBY, m[2]);
  if (reconnected) {
    for (const name of state.rooms.keys()) if (name !== LOBBY) setMembers(name, "");
    addLine(LOBBY, line, null, "notice");
    show(state.shown);
  } else {
    addLine(LOBBY, line, null, "notice");
    show(LOBBY);
    $("message").focus();
  }
}

const ROOM = "(#[a-z0-9][a-z0-9_.-]{0,31})";
const RE = {
  prefixed: new RegExp("^\\[" + ROOM + "\\] ([\\s\\S]*)$"),
  stamped: /^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] ([\s\S]*)$/,
  joinedRoom: new RegExp("^\\*\\*\\* You (joined|are in) " + ROOM + "; \\d+ here: (.*)$"),
  nowIn: new RegExp("^\\*\\*\\* Now talking in " + ROOM + "$"),
  leftRoom: new RegExp("^\\*\\*\\* You left " + ROOM + "$"),
  online: /^\*\*\* \d+ online: (.*)$/,
  inRoom: new RegExp("^\\*\\*\\* \\d+ in " + ROOM + "(?:: (.*))?$"),
  history: new RegExp("^\\*\\*\\* History of " + ROOM + ": "),
  missed: new RegExp("^\\*\\*\\* You missed .* in " + ROOM + "[^#]*:$"),
  joined: /^\*\*\* (\S+) joined$/,
  left: /^\*\*\* (\S+) left(?: \(.*\))?$/,
};

// Puts one chat-phase line in its room and keeps rooms, members and the current room in step.
function route(line) {
  let m;
  if ((m = RE.stamped.exec(line)) && state.block) {
    return addLine(state.block, m[2], m[1]);
  }
  if (line === "*** End of history") {
    const name = state.block || state.shown;
    state.block = null;
    return addLine(name, line, null, "notice");
  }
  state.block = null;
  if ((m = RE.prefixed.exec(line))) {
    const [, name, rest] = m;
    let e;
    if ((e = RE.joined.exec(rest))) memberJoined(name, e[1]);
    else if ((e = RE.left.exec(rest))) memberLeft(name, e[1]);
    return addLine(name, rest);
  }
  if ((m = RE.joinedRoom.exec(line))) {
    const [, how, name, members] = m;
    setMembers(name, members);
    addLine(name, line, null, "notice");
    if (how === "joined") {
      state.current = name;
      show(name);
    }
    return;
  }
  if ((m = RE.nowIn.exec(line))) {
    state.current = m[1];
    room(m[1]);
    if (state.shown !== m[1]) show(m[1]);
    return;
  }
  if ((m = RE.leftRoom.exec(line))) {
    const name = m[1];
    state.rooms.delete(name);
    state.numbers.delete(name);
    if (state.current === name) state.current = LOBBY;
    show(state.shown === name ? LOBBY : state.shown);
    return addLine(LOBBY, line, null, "notice");
  }
  if ((m = RE.history.exec(line)) || (m = RE.missed.exec(line))) {
    state.block = m[1];
    return addLine(m[1], line, null, "notice");
  }
  if ((m = RE.online.exec(line))) setMembers(LOBBY, m[1]);
  else if ((m = RE.inRoom.exec(line))) setMembers(m[1], m[2] || "");
  else if ((m = RE.joined.exec(line))) memberJoined(LOBBY, m[1]);
  else if ((m = RE.left.exec(line))) memberLeft(LOBBY, m[1]);
  // #lobby events carry no prefix; replies and private messages show where the user looks.
  const lobbyEvent = RE.joined.test(line) || RE.left.test(line) || /^<[^>]+> /.test(line) ||
    /^\* \S+ /.test(line) || line.startsWith("*** [admin] ");
  addLine(lobbyEvent ? LOBBY : state.shown, line);
}

function submitLine(ev) {
  ev.preventDefault();
  const input = $("message");
  const line = input.value;
  if (!line) return;
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
    status("Not connected; the line was not sent");
    return;
  }
  send(line);
  state.sent.push(line);
  if (state.sent.length > MAX_INPUT_HISTORY) state.sent.shift();
  state.sentAt = state.sent.length;
  input.value = "";
  // Own lines come back from the server, numbered, in their place among the room's lines.
  if (!line.startsWith("/") || line.startsWith("//")) {
    if (state.shown !== state.current) show(state.current);
  } else if (/^\/quit\b/.test(line)) {
    state.final = true;
  }
}

// Back online: log in again now rather than at the end of the back-off.
function online() {
  if (state.reconnecting && state.phase === "out") connect();
}

function offline() {
  if (state.phase === "out" && state.reconnecting) status("Offline; waiting for the network…");
}

function inputHistory(ev) {
  const input = $("message");
  if (ev.key === "ArrowUp" && state.sentAt > 0) {
    if (state.sentAt === state.sent.length) state.draft = input.value;
    state.sentAt -= 1;
    input.value = state.sent[state.sentAt];
    ev.preventDefault();
  } else if (ev.key === "ArrowDown" && state.sentAt < state.sent.length) {
    state.sentAt += 1;
    input.value = state.sentAt === state.sent.length ? state.draft : state.sent[state.sentAt];
    ev.preventDefault();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.user = $("username").value.trim();
    state.password = $("password").value;
    $("login-error").textContent = "";
    $("login-button").disabled = true;
    connect();
  });
  $("send-form").addEventListener("submit", submitLine);
  window.addEventListener("online", online);
  window.addEventListener("offline", offline);
  $("message").addEventListener("keydown", inputHistory);
  $("join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    let name = $("join-name").value.trim().toLowerCase();
    if (!name) return;
    if (!name.startsWith("#")) name = "#" + name;
    $("join-name").value = "";
    send("/join " + name);
    $("message").focus();
  });
  $("toggle-people").addEventListener("click", () => {
    const open = $("people").classList.toggle("open");
    $("toggle-people").setAttribute("aria-expanded", String(open));
  });
  $("username").focus();
});
