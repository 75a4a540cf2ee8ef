// pbxbridge widget: the live call card, the call-back list, a dialer and the DND switch.
// No dependencies and no build step. Every value from the server is set with textContent, never as HTML.
"use strict";

(() => {
  const TEXT = {
    en: {
      connecting: "Connecting…", live: "Live", offline: "Offline, reconnecting…", expired: "Session expired: reload the CRM page",
      noToken: "No widget token: open this page from the CRM", dnd: "Do not disturb", calls: "Calls",
      noCards: "No calls yet. A call that rings you appears here.", dialer: "Call", phone: "Phone number",
      phonePlaceholder: "+7 910 123-45-67", callButton: "Call", callbacks: "To call back",
      noCallbacks: "Nobody is waiting for a call back.", responsible: "Manager", state: "State", callBack: "Call back",
      lastCalls: "Last calls", when: "When", whoCol: "Who", outcome: "Outcome", duration: "Duration", recording: "Recording",
      firstCall: "The first call from this number.", incoming: "Incoming call", outgoing: "Outgoing call",
      unknown: "Unknown number", ringing: "Ringing", answeredBy: "Answered by", ended: "Ended", play: "Play",
      dialling: "Calling…", dialled: "Your phone will ring now, then the client's.", alreadyDialling: "Already calling this number.", tooManyCalls: "Too many calls in a minute: try again in {s} s.",
      failed: "Could not call", noRecording: "The recording is not available yet.", missedTimes: "missed",
      answered: "answered", missed: "missed", busy: "busy", not_available: "not available", not_allowed: "not allowed",
      cancelled: "cancelled", not_found: "not found", not_answered: "not answered", lead: "lead",
      presence_online: "online", presence_offline: "offline", presence_away: "away", presence_busy: "busy",
      presenceAsOf: "As of the last directory sync", agoNow: "just now", agoMin: "{n} min ago", agoHour: "{n} h ago", agoDay: "{n} d ago",
      overdue: "Overdue", overdueSince: "overdue since {t}", teamOverdue: "{owner}'s call-back to {phone}",
    },
    ru: {
      connecting: "Подключение…", live: "На связи", offline: "Нет связи, переподключаюсь…", expired: "Сессия истекла: обновите страницу CRM",
      noToken: "Нет токена виджета: откройте страницу из CRM", dnd: "Не беспокоить", calls: "Звонки",
      noCards: "Звонков пока нет. Здесь появится звонок, который поступит вам.", dialer: "Позвонить", phone: "Номер телефона",
      phonePlaceholder: "8 910 123-45-67", callButton: "Позвонить", callbacks: "Перезвонить",
      noCallbacks: "Никто не ждёт обратного звонка.", responsible: "Менеджер", state: "Состояние", callBack: "Перезвонить",
      lastCalls: "Последние звонки", when: "Когда", whoCol: "Кто", outcome: "Итог", duration: "Длительность", recording: "Запись",
      firstCall: "Первый звонок с этого номера.", incoming: "Входящий звонок", outgoing: "Исходящий звонок",
      unknown: "Неизвестный номер", ringing: "Звонит", answeredBy: "Ответил", ended: "Завершён", play: "Слушать",
      dialling: "Соединяю…", dialled: "Сейчас зазвонит ваш телефон, затем клиента.", alreadyDialling: "Этот номер уже набирается.", tooManyCalls: "Слишком много звонков за минуту: повторите через {s} с.",
      failed: "Не удалось позвонить", noRecording: "Запись пока недоступна.", missedTimes: "пропущено",
      answered: "отвечен", missed: "пропущен", busy: "занято", not_available: "недоступен", not_allowed: "запрещён",
      cancelled: "отменён", not_found: "не найден", not_answered: "без ответа", lead: "лид",
      presence_online: "в сети", presence_offline: "не в сети", presence_away: "отошёл", presence_busy: "занят",
      presenceAsOf: "По данным последней синхронизации справочника", agoNow: "только что", agoMin: "{n} мин назад", agoHour: "{n} ч назад", agoDay: "{n} дн. назад",
      overdue: "Просрочен", overdueSince: "просрочен с {t}", teamOverdue: "{owner}: обратный звонок на {phone}",
    },
  };
  const lang = (navigator.language || "en").toLowerCase().startsWith("ru") ? "ru" : "en";
  const t = (key) => TEXT[lang][key] || TEXT.en[key] || key;
  const $ = (id) => document.getElementById(id);
  const PING_MS = 5 * 60 * 1000; // API Gateway closes a connection idle for 10 minutes
  const MAX_CARDS = 5;
  // A failed reload of the call-back list (a 503 under load, the network gone) is tried again soon,
  // backing off: within 0.5-1 s, then 1-2 s, 2-4 s... up to 15-30 s (a random point in the upper half
  // of each doubling step, so many pages that failed together do not retry in step); a success resets it.
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30 * 1000;
  const cards = new Map(); // callid -> {element, card}

  // The token arrives in the URL fragment (never sent to a server) and is kept for this tab only.
  function takeToken() {
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
    try {
      if (fromHash) sessionStorage.setItem("pbxbridge.token", fromHash);
      return fromHash || sessionStorage.getItem("pbxbridge.token");
    } catch (e) {
      return fromHash; // storage refused (a sandboxed frame): the fragment still works
    } finally {
      if (fromHash) history.replaceState(null, "", location.pathname + location.search);
    }
  }
  const token = takeToken();

  function setStatus(key) {
    const el = $("status");
    el.textContent = t(key);
    el.dataset.state = key;
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
    } catch (e) {
      return { status: 0, data: null };
    }
    let data = null;
    try { data = await response.json(); } catch (e) { /* not JSON */ }
    return { status: response.status, data, retryAfter: Number(response.headers.get("Retry-After")) || null };
  }

  const clock = (iso) => {
    if (!iso) return "";
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return "";
    const today = new Date().toDateString() === when.toDateString();
    return today
      ? when.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" })
      : when.toLocaleString(lang, { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" });
  };
  // How long ago the directory saw a presence: it is synced now and then, so its age is shown with it.
  function ago(seconds) {
    if (seconds < 60) return t("agoNow");
    const [key, unit] = seconds < 3600 ? ["agoMin", 60] : seconds < 86400 ? ["agoHour", 3600] : ["agoDay", 86400];
    return t(key).replace("{n}", String(Math.floor(seconds / unit)));
  }
  // The responsible's presence as the PBX words it (a word we do not know is shown as it came).
  function presenceBadge(presence) {
    const badge = document.createElement("span");
    badge.className = "presence";
    badge.dataset.state = presence.state;
    badge.title = t("presenceAsOf");
    const dot = document.createElement("span");
    dot.className = "presence-dot";
    dot.setAttribute("aria-hidden", "true");
    const word = TEXT[lang]["presence_" + presence.state] || TEXT.en["presence_" + presence.state] || presence.state;
    badge.append(dot, document.createTextNode(word));
    if (typeof presence.age_seconds === "number") {
      const age = document.createElement("span");
      age.className = "presence-age";
      age.textContent = ` · ${ago(presence.age_seconds)}`;
      badge.appendChild(age);
    }
    return badge;
  }
  // Only http(s) links are links: a `javascript:` (or any other) URL from the server is shown as text.
  function linkable(value) {
    if (typeof value !== "string" || !value) return null;
    try {
      const url = new URL(value); // absolute URLs only: no base to resolve a relative one against
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }
  const seconds = (n) => (typeof n === "number" ? `${Math.floor(n / 60)}:${String(n % 60).padStart(2, "0")}` : "");

  // The card

  function stateText(card) {
    if (card.state === "ringing") return t("ringing");
    if (card.state === "answered") return `${t("answeredBy")} ${card.answered_by ? card.answered_by.name : ""}`.trim();
    const parts = [card.outcome ? t(card.outcome) : t("ended")];
    if (card.answered_by && card.outcome === "answered") parts.push(card.answered_by.name);
    if (card.duration) parts.push(seconds(card.duration));
    return parts.join(" · ");
  }

  function playButton(callid, where) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "play";
    button.textContent = "▶ " + t("play");
    button.setAttribute("aria-label", `${t("play")} ${t("recording").toLowerCase()}`);
    button.addEventListener("click", async () => {
      button.disabled = true;
      const answer = await api("GET", `/api/calls/${encodeURIComponent(callid)}/recording`);
      button.disabled = false;
      if (!answer.data || !answer.data.ok) {
        button.title = t("noRecording");
        button.textContent = t("noRecording");
        return;
      }
      let audio = where.querySelector(`audio[data-callid="${CSS.escape(callid)}"]`);
      if (!audio) {
        audio = document.createElement("audio");
        audio.controls = true;
        audio.dataset.callid = callid;
        where.appendChild(audio);
      }
      audio.src = answer.data.result.url;
      audio.play().catch(() => { /* the user can press play on the controls */ });
    });
    return button;
  }

  function renderState(entry) {
    const { element, card } = entry;
    element.dataset.state = card.state;
    element.querySelector(".state").textContent = stateText(card);
    const actions = element.querySelector(".actions");
    if (card.recorded && !actions.querySelector(".play")) actions.appendChild(playButton(card.callid, element));
  }

  function showCard(card) {
    const fragment = $("card-template").content.cloneNode(true);
    translate(fragment);
    const element = fragment.querySelector(".card");
    element.dataset.callid = card.callid;
    element.querySelector(".badge").textContent = card.direction === "out" ? t("outgoing") : t("incoming");
    element.querySelector(".phone").textContent = card.phone_national || card.phone || "";
    element.querySelector(".time").textContent = clock(card.rang_at);
    let link = element.querySelector(".contact-name");
    const unknown = element.querySelector(".contact-unknown");
    if (card.contact) {
      const href = linkable(card.contact.crm_url);
      if (!href) {
        const text = document.createElement("span"); // no link at all: not focusable, not clickable
        text.className = "contact-name";
        link.replaceWith(text);
        link = text;
      } else {
        link.href = href;
      }
      link.textContent = card.contact.name + (card.contact.lead ? ` (${t("lead")})` : "");
      unknown.remove();
    } else {
      link.remove();
      unknown.textContent = t("unknown");
    }
    const responsible = element.querySelector(".responsible");
    responsible.textContent = card.responsible ? card.responsible.name : "—";
    const presence = card.responsible && card.responsible.presence;
    if (presence && typeof presence.state === "string" && presence.state) responsible.append(" ", presenceBadge(presence));
    element.querySelector(".call-back").addEventListener("click", () => dial(card.phone));
    const body = element.querySelector("tbody");
    for (const past of card.last_calls || []) {
      const row = document.createElement("tr");
      const cells = [clock(past.started_at), past.who ? past.who.name : "—", t(past.outcome), seconds(past.duration)];
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      const play = document.createElement("td");
      if (past.recorded) play.appendChild(playButton(past.callid, element.querySelector(".history")));
      row.appendChild(play);
      body.appendChild(row);
    }
    if ((card.last_calls || []).length) element.querySelector(".history-empty").remove();
    else element.querySelector(".history table").remove();

    const previous = cards.get(card.callid);
    if (previous) previous.element.replaceWith(element);
    else $("cards").prepend(element);
    const entry = { element, card: { ...(previous ? previous.card : {}), ...card } };
    cards.set(card.callid, entry);
    renderState(entry);
    while (cards.size > MAX_CARDS) {
      const [oldest] = cards.keys();
      cards.get(oldest).element.remove();
      cards.delete(oldest);
    }
    $("no-cards").hidden = true;
    if (!previous && card.state === "ringing") {
      const who = card.contact ? card.contact.name : t("unknown");
      $("announce").textContent = `${card.direction === "out" ? t("outgoing") : t("incoming")}: ${who}, ${card.phone_national || card.phone}`;
    }
  }

  function updateCard(update) {
    const entry = cards.get(update.callid);
    if (!entry) return; // a card that popped before this page opened: nothing to update
    entry.card = { ...entry.card, ...update };
    renderState(entry); // a call-back this call opens arrives as its own "callbacks" message
  }

  // The socket

  let retry = 0;
  function connect() {
    setStatus("connecting");
    const url = document.querySelector('meta[name="pbxbridge-socket"]').content;
    const socket = new WebSocket(`${url}?token=${encodeURIComponent(token)}`);
    let opened = false;
    let ping = null;
    socket.addEventListener("open", () => {
      opened = true;
      retry = 0;
      setStatus("live");
      ping = setInterval(() => socket.send(JSON.stringify({ action: "ping" })), PING_MS);
    });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "card") showCard(message.card);
      else if (message.type === "card.update") updateCard(message.card);
      else if (message.type === "callbacks") loadCallbacks();
      else if (message.type === "callbackOverdue") showTeamOverdue(message);
    });
    socket.addEventListener("close", async () => {
      clearInterval(ping);
      if (!opened) {
        const me = await api("GET", "/api/me");
        if (me.status === 401 || me.status === 403) { setStatus("expired"); return; }
      }
      setStatus("offline");
      retry += 1;
      setTimeout(connect, Math.min(30000, 500 * 2 ** Math.min(retry, 6)));
    });
  }

  // The dialer: one requestId per intent, so a double click (or a retry) dials once.

  let intent = null;
  const newId = () => (crypto.randomUUID ? crypto.randomUUID() : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join(""));
  async function dial(phone) {
    phone = String(phone || "").trim();
    const result = $("dial-result");
    if (!phone) { $("dial-phone").focus(); return; }
    const now = Date.now();
    if (!intent || intent.phone !== phone || intent.until < now) intent = { phone, id: newId() };
    intent.until = now + 5000;
    result.textContent = t("dialling");
    result.dataset.state = "busy";
    const answer = await api("POST", "/api/calls", { phone, requestId: intent.id });
    if (answer.data && answer.data.ok) {
      result.textContent = t("dialled");
      result.dataset.state = "ok";
    } else if (answer.data && answer.data.error && answer.data.error.code === "request_in_progress") {
      result.textContent = t("alreadyDialling");
      result.dataset.state = "ok";
    } else if (answer.status === 429) {
      result.textContent = t("tooManyCalls").replace("{s}", String(answer.retryAfter || 60));
      result.dataset.state = "error";
      intent = null; // a later click is a new intent
    } else {
      const message = answer.data && answer.data.error ? answer.data.error.message : String(answer.status);
      result.textContent = `${t("failed")}: ${message}`;
      result.dataset.state = "error";
    }
  }

  // Do not disturb

  async function loadDnd() {
    const button = $("dnd");
    const answer = await api("GET", "/api/dnd");
    if (answer.data && answer.data.ok) {
      button.setAttribute("aria-checked", String(Boolean(answer.data.result.state)));
      button.disabled = false;
    }
  }
  async function toggleDnd() {
    const button = $("dnd");
    const wanted = button.getAttribute("aria-checked") !== "true";
    button.disabled = true;
    const answer = await api("PUT", "/api/dnd", { state: wanted });
    if (answer.data && answer.data.ok) button.setAttribute("aria-checked", String(Boolean(answer.data.result.state)));
    button.disabled = false;
    button.focus();
  }

  // Call-backs

  // A supervisor (or admin) is told when a call-back of someone they see runs out of its SLA: the
  // latest few, newest first, each once.
  const MAX_TEAM_OVERDUE = 5;
  function showTeamOverdue(message) {
    const list = $("team-overdue");
    if (!message.callback_id || list.querySelector(`li[data-callback="${CSS.escape(message.callback_id)}"]`)) return;
    const row = document.createElement("li");
    row.dataset.callback = message.callback_id;
    const badge = document.createElement("span");
    badge.className = "overdue-badge";
    badge.textContent = t("overdue");
    const text = document.createElement("span");
    text.textContent = t("teamOverdue").replace("{owner}", message.owner || "").replace("{phone}", message.phone || "");
    row.append(badge, text);
    list.prepend(row);
    while (list.children.length > MAX_TEAM_OVERDUE) list.lastElementChild.remove();
    list.hidden = false;
  }

  let callbacksLoad = 0; // only the latest load draws the list
  let callbacksFailures = 0;
  let callbacksRetry = null;
  function retryCallbacks(retryAfter) {
    callbacksFailures += 1;
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(callbacksFailures - 1, 10));
    let delay = ceiling / 2 + Math.random() * (ceiling / 2);
    if (retryAfter) delay = Math.min(RETRY_MAX_MS, Math.max(delay, retryAfter * 1000));
    callbacksRetry = setTimeout(loadCallbacks, delay);
  }

  async function loadCallbacks() {
    clearTimeout(callbacksRetry); // a reload asked for now (the socket, the poll) replaces a pending retry
    callbacksRetry = null;
    const load = ++callbacksLoad;
    const answer = await api("GET", "/api/callbacks?status=open");
    if (load !== callbacksLoad) return;
    if (!answer.data || !answer.data.ok) {
      // Only what a retry can fix (the network, 5xx, throttling); a 4xx such as an expired session
      // waits for the next reload instead.
      const status = answer.status;
      if (status === 0 || status >= 500 || status === 429 || status === 408) retryCallbacks(answer.retryAfter);
      return;
    }
    callbacksFailures = 0;
    const items = answer.data.result.callbacks || [];
    const list = $("callbacks");
    list.replaceChildren();
    for (const item of items) {
      const row = document.createElement("li");
      row.className = "callback";
      row.dataset.phone = item.phone;
      const who = document.createElement("span");
      who.className = "callback-who";
      const name = document.createElement("strong");
      name.textContent = item.contact_name || t("unknown");
      const phone = document.createElement("span");
      phone.className = "callback-phone";
      phone.textContent = item.phone_national || item.phone;
      who.append(name, phone);
      if (item.overdue_since) {
        // Past its SLA while still open (the server decides, once): a red badge, said in words too.
        row.classList.add("overdue");
        const badge = document.createElement("span");
        badge.className = "overdue-badge";
        badge.textContent = t("overdue");
        badge.title = t("overdueSince").replace("{t}", clock(item.overdue_since));
        who.appendChild(badge);
      }
      const meta = document.createElement("span");
      meta.className = "callback-meta";
      meta.textContent = `${item.missed_count} ${t("missedTimes")} · ${clock(item.last_missed_at)}`;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "primary";
      button.textContent = t("callBack");
      button.setAttribute("aria-label", `${t("callBack")}: ${name.textContent} ${phone.textContent}`);
      button.addEventListener("click", () => dial(item.phone));
      row.append(who, meta, button);
      list.appendChild(row);
    }
    $("callbacks-count").textContent = items.length ? `(${items.length})` : "";
    $("no-callbacks").hidden = items.length > 0;
  }

  function translate(root) {
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  }

  async function start() {
    document.documentElement.lang = lang;
    translate(document);
    if (!token) { setStatus("noToken"); return; }
    $("dialer").addEventListener("submit", (event) => { event.preventDefault(); dial($("dial-phone").value); });
    $("dnd").addEventListener("click", toggleDnd);
    const me = await api("GET", "/api/me");
    if (me.status === 401 || me.status === 403) { setStatus("expired"); return; }
    if (me.data && me.data.ok) $("who").textContent = me.data.result.login;
    connect();
    loadDnd();
    loadCallbacks();
    setInterval(loadCallbacks, 60 * 1000);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
