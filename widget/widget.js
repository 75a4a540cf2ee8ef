// pbxbridge widget: the live call card, the call-back list, a dialer, the DND switch and, for a
// supervisor or admin, the team view (a live board and the period's figures).
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
      views: "Views", myCalls: "My calls", team: "Team", board: "Now", departmentCallbacks: "Department call-backs",
      figures: "Figures", period: "Period", period_today: "Today", period_yesterday: "Yesterday", period_this_week: "This week",
      period_last_week: "Last week", period_this_month: "This month", period_last_month: "Last month", period_dates: "Dates…",
      from: "From", to: "To", show: "Show", retry: "Try again", perPerson: "Per person", perDepartment: "Per department",
      loading: "Loading…", loadFailed: "Could not load: the server did not answer. Try again in a moment.",
      noTeamCalls: "No calls in this period.", noPeople: "Nobody to show.", periodShown: "{from} – {to} ({zone})",
      tileInbound: "Inbound", tileMissed: "Missed", tileCalledBack: "Called back within 15 min", tileMedian: "Median time to call back",
      ofMissed: "of {n} to call back", shareOf: "{p} of inbound",
      colName: "Name", colDepartment: "Department", colInbound: "Inbound", colAnswered: "Answered", colMissed: "Missed", colMissedShare: "Missed, %",
      colWithin20: "Answered ≤20 s", colCb15: "Called back ≤15 min", colCbSameDay: "Same day", colCbLater: "Later", colNotCalledBack: "Not called back",
      colMedian: "Call back, median", colP90: "Call back, p90", colOutbound: "Outbound", colReached: "Reached", colTalk: "Talk time",
      colWait: "Average wait", colRating: "Rating", sortBy: "Sort by {col}",
      chartMissed: "Missed calls per day", chartCallback: "Time to call back per day", median: "median", p90: "90th percentile",
      chartMissedDesc: "{n} missed in {days} days; most on {day}: {max}.", chartCallbackDesc: "Median and 90th percentile time to call back, per day; longest 90th percentile: {max} on {day}.",
      chartNoData: "No call-backs were closed in this period.", asTable: "The numbers", day: "Day",
      noCall: "No call", inCall: "Incoming", outCall: "Outgoing", callAnswered: "answered", callRinging: "ringing",
      dndOn: "DND", dndTitle: "Do not disturb since {t}", toCallBack: "{n} to call back", oldest: "oldest {age}",
      noCallbacksShort: "no call-backs", sla_ok: "on time", sla_due: "due soon", sla_overdue: "overdue",
      ageMin: "{n} min", ageHour: "{h} h {m} min", ageDay: "{n} d", hours: "h", boardAsOf: "Live · as of {t}",
      noDepartments: "No department call-backs.",
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
      views: "Разделы", myCalls: "Мои звонки", team: "Команда", board: "Сейчас", departmentCallbacks: "Перезвоны отделов",
      figures: "Показатели", period: "Период", period_today: "Сегодня", period_yesterday: "Вчера", period_this_week: "Эта неделя",
      period_last_week: "Прошлая неделя", period_this_month: "Этот месяц", period_last_month: "Прошлый месяц", period_dates: "Даты…",
      from: "С", to: "По", show: "Показать", retry: "Повторить", perPerson: "По сотрудникам", perDepartment: "По отделам",
      loading: "Загрузка…", loadFailed: "Не удалось загрузить: сервер не ответил. Повторите чуть позже.",
      noTeamCalls: "За этот период звонков нет.", noPeople: "Некого показать.", periodShown: "{from} – {to} ({zone})",
      tileInbound: "Входящие", tileMissed: "Пропущено", tileCalledBack: "Перезвонили за 15 мин", tileMedian: "Медиана времени до перезвона",
      ofMissed: "из {n} к перезвону", shareOf: "{p} входящих",
      colName: "Сотрудник", colDepartment: "Отдел", colInbound: "Входящие", colAnswered: "Отвечено", colMissed: "Пропущено", colMissedShare: "Пропущено, %",
      colWithin20: "Ответ ≤20 с", colCb15: "Перезвон ≤15 мин", colCbSameDay: "В тот же день", colCbLater: "Позже", colNotCalledBack: "Не перезвонили",
      colMedian: "Перезвон, медиана", colP90: "Перезвон, p90", colOutbound: "Исходящие", colReached: "Дозвонились", colTalk: "Разговор",
      colWait: "Среднее ожидание", colRating: "Оценка", sortBy: "Сортировать: {col}",
      chartMissed: "Пропущенные звонки по дням", chartCallback: "Время до перезвона по дням", median: "медиана", p90: "90-й перцентиль",
      chartMissedDesc: "{n} пропущено за {days} дн.; больше всего {day}: {max}.", chartCallbackDesc: "Медиана и 90-й перцентиль времени до перезвона по дням; наибольший 90-й перцентиль: {max}, {day}.",
      chartNoData: "За этот период перезвонов не было.", asTable: "Числа", day: "День",
      noCall: "Нет звонка", inCall: "Входящий", outCall: "Исходящий", callAnswered: "разговор", callRinging: "звонит",
      dndOn: "Не беспокоить", dndTitle: "Не беспокоить с {t}", toCallBack: "перезвонить: {n}", oldest: "самый давний {age}",
      noCallbacksShort: "перезвонов нет", sla_ok: "в срок", sla_due: "скоро срок", sla_overdue: "просрочен",
      ageMin: "{n} мин", ageHour: "{h} ч {m} мин", ageDay: "{n} дн.", hours: "ч", boardAsOf: "Онлайн · на {t}",
      noDepartments: "У отделов нет перезвонов.",
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
      if (board.loaded) loadBoard(); // what the board missed while the socket was down
      ping = setInterval(() => socket.send(JSON.stringify({ action: "ping" })), PING_MS);
    });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "card") showCard(message.card);
      else if (message.type === "card.update") updateCard(message.card);
      else if (message.type === "callbacks") loadCallbacks();
      else if (message.type === "callbackOverdue") showTeamOverdue(message);
      else if (!teamAllowed) return; // a manager's page has no board (and the server sends it none)
      else if (message.type === "board.call") boardCall(message.call);
      else if (message.type === "board.dnd") boardDnd(message);
      else if (message.type === "board.callbacks") boardCallbacksChanged();
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
    callbacksRetry = setTimeout(loadCallbacks, retryDelay(callbacksFailures, retryAfter));
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
      if (retryable(status)) retryCallbacks(answer.retryAfter);
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

  // The team view (supervisors and admins only): the live board and the period's figures. The server
  // decides who may see what (a manager's token is answered 403); the page only leaves out what its
  // user cannot use, and never asks the team routes for a manager.

  const number = (n) => (typeof n === "number" ? n.toLocaleString(lang) : "—");
  const percent = new Intl.NumberFormat(lang, { style: "percent", maximumFractionDigits: 1 });
  const share = (n) => (typeof n === "number" ? percent.format(n) : "—");
  const rating = (n) => (typeof n === "number" ? n.toLocaleString(lang, { maximumFractionDigits: 2 }) : "—");
  // m:ss under an hour, h:mm (with its unit, so "1:05 h" never reads as a minute) from an hour up.
  function duration(n) {
    if (typeof n !== "number") return "—";
    const whole = Math.max(0, Math.round(n));
    if (whole < 3600) return seconds(whole);
    return `${Math.floor(whole / 3600)}:${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")} ${t("hours")}`;
  }
  function age(n) {
    const minutes = Math.floor(n / 60);
    if (minutes < 60) return t("ageMin").replace("{n}", String(minutes));
    if (minutes < 24 * 60) return t("ageHour").replace("{h}", String(Math.floor(minutes / 60))).replace("{m}", String(minutes % 60));
    return t("ageDay").replace("{n}", String(Math.floor(minutes / (24 * 60))));
  }
  const dayShort = (day) => {
    const [, month, date] = String(day).split("-");
    return lang === "ru" ? `${date}.${month}` : `${month}/${date}`;
  };
  const dayLong = (day) => {
    const when = new Date(`${day}T12:00:00`);
    return Number.isNaN(when.getTime()) ? String(day) : when.toLocaleDateString(lang, { day: "numeric", month: "short", year: "numeric" });
  };
  const element = (tag, className, text) => {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  };
  function retryDelay(failures, retryAfter) {
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(failures - 1, 10));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    return retryAfter ? Math.min(RETRY_MAX_MS, Math.max(delay, retryAfter * 1000)) : delay;
  }
  const retryable = (status) => status === 0 || status >= 500 || status === 429 || status === 408;

  // The tabs (WAI-ARIA tabs, activated as they are focused: arrows, Home and End move between them).

  const TABS = ["tab-mine", "tab-team"];
  let teamAllowed = false;
  let teamOpened = false;

  function selectTab(id) {
    for (const tabId of TABS) {
      const tab = $(tabId);
      const on = tabId === id;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      $(tab.getAttribute("aria-controls")).hidden = !on;
    }
    try { sessionStorage.setItem("pbxbridge.view", id); } catch (e) { /* storage refused: the view is not kept */ }
    if (id === "tab-team") openTeam();
  }

  function enableTeam() {
    teamAllowed = true;
    $("tabs").hidden = false;
    for (const tabId of TABS) {
      const tab = $(tabId);
      const panel = $(tab.getAttribute("aria-controls"));
      panel.setAttribute("role", "tabpanel");
      panel.setAttribute("aria-labelledby", tabId);
      tab.addEventListener("click", () => selectTab(tabId));
      tab.addEventListener("keydown", (event) => {
        const at = TABS.indexOf(tabId);
        const next = { ArrowRight: (at + 1) % TABS.length, ArrowLeft: (at - 1 + TABS.length) % TABS.length, Home: 0, End: TABS.length - 1 }[event.key];
        if (next === undefined) return;
        event.preventDefault();
        selectTab(TABS[next]);
        $(TABS[next]).focus();
      });
    }
    let kept = null;
    try { kept = sessionStorage.getItem("pbxbridge.view"); } catch (e) { /* storage refused */ }
    selectTab(kept === "tab-team" ? "tab-team" : "tab-mine"); // the view this tab showed before a reload
  }

  // The server says no (the role changed since the page opened): the view goes, and the page stops asking.
  function hideTeam() {
    teamAllowed = false;
    selectTab("tab-mine");
    $("tabs").hidden = true;
    for (const tabId of TABS) {
      const panel = $($(tabId).getAttribute("aria-controls"));
      panel.removeAttribute("role");
      panel.removeAttribute("aria-labelledby");
    }
    $("panel-team").hidden = true;
    clearInterval(boardClock);
  }

  function openTeam() {
    if (teamOpened) { drawCharts(); return; }
    teamOpened = true;
    $("period-form").addEventListener("submit", (event) => { event.preventDefault(); loadReport(); });
    $("period").addEventListener("change", () => {
      const dates = $("period").value === "dates";
      $("period-dates").hidden = !dates;
      if (!dates) { loadReport(); return; }
      if (lastReport) {
        $("period-from").value = $("period-from").value || lastReport.from;
        $("period-to").value = $("period-to").value || lastReport.to;
      }
    });
    $("report-retry").addEventListener("click", loadReport);
    if (window.ResizeObserver) {
      let width = 0;
      new ResizeObserver(([entry]) => {
        const now = Math.round(entry.contentRect.width);
        if (now && now !== width) { width = now; drawCharts(); }
      }).observe($("chart-missed"));
    }
    loadBoard();
    loadReport();
    boardClock = setInterval(tick, 1000);
  }

  // The figures

  const COLUMNS = [
    { key: "inbound", label: "colInbound", format: number },
    { key: "answered", label: "colAnswered", format: number },
    { key: "missed", label: "colMissed", format: number },
    { key: "missed_share", label: "colMissedShare", format: share },
    { key: "answered_within_20s", label: "colWithin20", format: number },
    { key: "called_back_within_15min", label: "colCb15", format: number },
    { key: "called_back_same_day", label: "colCbSameDay", format: number },
    { key: "called_back_later", label: "colCbLater", format: number },
    { key: "not_called_back", label: "colNotCalledBack", format: number },
    { key: "time_to_call_back_median", label: "colMedian", format: duration },
    { key: "time_to_call_back_p90", label: "colP90", format: duration },
    { key: "outbound", label: "colOutbound", format: number },
    { key: "outbound_reached", label: "colReached", format: number },
    { key: "talk_seconds", label: "colTalk", format: duration },
    { key: "average_wait_seconds", label: "colWait", format: duration },
    { key: "rating_average", label: "colRating", format: rating },
  ];
  const sorts = {}; // table id -> {key, direction: 1 ascending, -1 descending}
  let lastReport = null;
  let reportLoad = 0;

  function compareRows(key, direction) {
    return (a, b) => {
      const x = a[key];
      const y = b[key];
      const missingX = x === null || x === undefined;
      const missingY = y === null || y === undefined;
      if (missingX || missingY) return missingX === missingY ? 0 : missingX ? 1 : -1; // empty cells last either way
      return direction * (typeof x === "string" ? x.localeCompare(y, lang) : x - y);
    };
  }

  function figuresTable(table, rows, nameLabel) {
    const sort = sorts[table.id] || (sorts[table.id] = { key: "name", direction: 1 });
    const columns = [{ key: "name", label: nameLabel, format: String }, ...COLUMNS];
    const head = document.createElement("thead");
    const headRow = document.createElement("tr");
    for (const column of columns) {
      const th = element("th");
      th.scope = "col";
      if (column.key !== "name") th.className = "num";
      if (column.key === sort.key) th.setAttribute("aria-sort", sort.direction > 0 ? "ascending" : "descending");
      const button = element("button", "sort");
      button.type = "button";
      button.dataset.key = column.key;
      const mark = element("span", "sort-mark", column.key === sort.key ? (sort.direction > 0 ? "▲" : "▼") : "↕");
      mark.setAttribute("aria-hidden", "true");
      button.append(element("span", "sort-label", t(column.label)), mark);
      button.addEventListener("click", () => {
        // Names A to Z first; numbers biggest first (who missed most); a second press turns it round.
        if (sort.key === column.key) sort.direction = -sort.direction;
        else Object.assign(sort, { key: column.key, direction: column.key === "name" ? 1 : -1 });
        figuresTable(table, rows, nameLabel);
        table.querySelector(`button[data-key="${column.key}"]`).focus();
      });
      th.appendChild(button);
      headRow.appendChild(th);
    }
    head.appendChild(headRow);
    const body = document.createElement("tbody");
    for (const row of [...rows].sort(compareRows(sort.key, sort.direction))) {
      const tr = document.createElement("tr");
      tr.dataset.key = row.id;
      const name = element("th", "name", row.name);
      name.scope = "row";
      tr.appendChild(name);
      for (const column of COLUMNS) {
        const cell = element("td", "num", column.format(row[column.key]));
        cell.dataset.col = column.key;
        tr.appendChild(cell);
      }
      body.appendChild(tr);
    }
    table.replaceChildren(head, body);
  }

  function tile(key, label, value, note) {
    const item = element("li", "tile");
    item.dataset.tile = key;
    item.append(element("span", "tile-label", label), element("strong", "tile-value", value));
    if (note) item.appendChild(element("span", "tile-note", note));
    return item;
  }

  function reportStatus(key, state, text) {
    const status = $("report-status");
    status.textContent = text || (key ? t(key) : "");
    status.dataset.state = state || "";
    $("report-retry").hidden = state !== "error";
  }

  async function loadReport() {
    let query;
    if ($("period").value === "dates") {
      const from = $("period-from").value;
      const to = $("period-to").value;
      if (!from || !to) { (from ? $("period-to") : $("period-from")).focus(); return; }
      query = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
    } else {
      query = `period=${encodeURIComponent($("period").value)}`;
    }
    const load = ++reportLoad;
    reportStatus("loading", "busy");
    const answer = await api("GET", `/api/team/report?${query}`);
    if (load !== reportLoad) return;
    if (answer.status === 403) { hideTeam(); return; }
    if (!answer.data || !answer.data.ok) {
      $("report").hidden = true;
      if (retryable(answer.status)) reportStatus("loadFailed", "error");
      else reportStatus(null, "invalid", answer.data && answer.data.error ? answer.data.error.message : String(answer.status));
      return;
    }
    showReport(answer.data.result);
  }

  function showReport(report) {
    lastReport = report;
    const total = report.total || {};
    const period = t("periodShown").replace("{from}", dayLong(report.from)).replace("{to}", dayLong(report.to)).replace("{zone}", report.zone || "");
    $("report-period").textContent = period;
    if (!(total.inbound || total.outbound || total.callbacks)) {
      $("report").hidden = true;
      reportStatus(null, "empty", `${period}: ${t("noTeamCalls")}`);
      return;
    }
    reportStatus(null, "");
    $("tiles").replaceChildren(
      tile("inbound", t("tileInbound"), number(total.inbound)),
      tile("missed", t("tileMissed"), number(total.missed), t("shareOf").replace("{p}", share(total.missed_share))),
      tile("called_back_within_15min", t("tileCalledBack"), number(total.called_back_within_15min), t("ofMissed").replace("{n}", number(total.callbacks))),
      tile("time_to_call_back_median", t("tileMedian"), duration(total.time_to_call_back_median), `p90 ${duration(total.time_to_call_back_p90)}`),
    );
    const people = (report.managers || []).map((row) => ({ ...row, id: row.login, name: row.name || row.login }));
    const departments = (report.departments || []).map((row) => ({ ...row, id: row.department, name: row.name || row.department }));
    figuresTable($("people-table"), people, "colName");
    figuresTable($("departments-table"), departments, "colDepartment");
    $("departments-title").hidden = !departments.length;
    $("departments-table").parentElement.hidden = !departments.length;
    $("report").hidden = false;
    drawCharts();
  }

  // The charts: plain SVG, drawn at the box's own width (so the text keeps its size from 360 px up),
  // each an image with a title and a summary, its numbers in a table below.

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attributes, text) {
    const el = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) el.setAttribute(name, String(value));
    if (text !== undefined) el.textContent = text;
    return el;
  }
  // A round top for the axis: 1, 2 or 5 times a power of ten, and even, so its half is a whole number.
  function roundUp(value) {
    const power = 10 ** Math.floor(Math.log10(Math.max(value, 1)));
    const top = [1, 2, 5, 10].map((m) => m * power).find((m) => m >= value);
    return Math.max(2, top % 2 ? top + 1 : top);
  }

  function drawCharts() {
    if (!lastReport || $("report").hidden || $("panel-team").hidden) return;
    const days = lastReport.days || [];
    const missed = $("chart-missed");
    const callback = $("chart-callback");
    missed.hidden = callback.hidden = !days.length;
    if (!days.length) return; // a server without the per-day series: the table says it all
    const top = days.reduce((best, d) => ((d.missed || 0) > (best.missed || 0) ? d : best), days[0]);
    const sum = days.reduce((n, d) => n + (d.missed || 0), 0);
    barChart(missed, {
      id: "chart-missed", title: t("chartMissed"), days, format: number, scale: roundUp,
      desc: t("chartMissedDesc").replace("{n}", number(sum)).replace("{days}", String(days.length)).replace("{day}", dayLong(top.day)).replace("{max}", number(top.missed || 0)),
      series: [{ key: "missed", label: t("colMissed"), className: "bar-missed" }],
    });
    const timed = days.filter((d) => typeof d.time_to_call_back_p90 === "number");
    const slowest = timed.reduce((best, d) => (d.time_to_call_back_p90 > best.time_to_call_back_p90 ? d : best), timed[0]);
    barChart(callback, {
      id: "chart-callback", title: t("chartCallback"), days, format: duration,
      scale: (v) => 60 * roundUp(Math.ceil(v / 60)), // whole minutes on the axis
      desc: slowest ? t("chartCallbackDesc").replace("{max}", duration(slowest.time_to_call_back_p90)).replace("{day}", dayLong(slowest.day)) : t("chartNoData"),
      series: [
        { key: "time_to_call_back_median", label: t("median"), className: "bar-median" },
        { key: "time_to_call_back_p90", label: t("p90"), className: "bar-p90" },
      ],
    });
  }

  function barChart(figure, { id, title, desc, days, series, format, scale }) {
    const width = Math.max(260, Math.floor(figure.clientWidth || 320));
    const height = 180;
    const left = 48;
    const right = 6;
    const top = 10;
    const bottom = 22;
    const values = days.flatMap((d) => series.map((s) => d[s.key])).filter((v) => typeof v === "number");
    const max = scale(Math.max(0, ...values));
    const plotWidth = width - left - right;
    const plotHeight = height - top - bottom;
    const y = (v) => top + plotHeight - (v / max) * plotHeight;
    const chart = svg("svg", { role: "img", class: "chart-svg", viewBox: `0 0 ${width} ${height}`, width, height, "aria-labelledby": `${id}-title ${id}-desc` });
    chart.append(svg("title", { id: `${id}-title` }, title), svg("desc", { id: `${id}-desc` }, desc));
    for (const v of [0, max / 2, max]) {
      chart.append(
        svg("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }),
        svg("text", { class: "axis", x: left - 4, y: y(v) + 4, "text-anchor": "end" }, format(v)),
      );
    }
    const step = plotWidth / days.length;
    const gap = Math.min(8, step * 0.25);
    const barWidth = (step - gap) / series.length;
    const every = Math.ceil(days.length / Math.max(1, Math.floor(plotWidth / 44))); // a date label every so many days
    days.forEach((day, i) => {
      series.forEach((s, j) => {
        const v = day[s.key];
        if (typeof v !== "number") return;
        const h = v > 0 ? Math.max(1, (v / max) * plotHeight) : 0;
        const bar = svg("rect", { class: `bar ${s.className}`, x: left + i * step + gap / 2 + j * barWidth, y: top + plotHeight - h, width: Math.max(1, barWidth - 1), height: h });
        bar.dataset.day = day.day;
        bar.appendChild(svg("title", {}, `${dayLong(day.day)}: ${s.label} ${format(v)}`));
        chart.appendChild(bar);
      });
      if (i % every === 0) chart.appendChild(svg("text", { class: "axis", x: left + i * step + step / 2, y: height - 6, "text-anchor": "middle" }, dayShort(day.day)));
    });
    const caption = element("figcaption", "chart-title", title);
    caption.setAttribute("aria-hidden", "true"); // the image's own title says it
    const parts = [caption];
    if (series.length > 1) {
      const legend = element("ul", "legend");
      legend.setAttribute("aria-hidden", "true");
      for (const s of series) {
        const item = element("li");
        const swatch = element("span", `swatch ${s.className}`);
        item.append(swatch, document.createTextNode(s.label));
        legend.appendChild(item);
      }
      parts.push(legend);
    }
    // The same numbers as a table, for a screen reader and for anyone who wants the exact values.
    const details = element("details", "chart-numbers");
    details.appendChild(element("summary", "", `${t("asTable")}: ${title.toLowerCase()}`));
    const box = element("div", "table-box");
    const table = element("table", "figures");
    const head = element("tr");
    for (const label of [t("day"), ...series.map((s) => s.label)]) {
      const th = element("th", label === t("day") ? "" : "num", label);
      th.scope = "col";
      head.appendChild(th);
    }
    const body = element("tbody");
    for (const day of days) {
      const row = element("tr");
      const th = element("th", "name", dayLong(day.day));
      th.scope = "row";
      row.appendChild(th);
      for (const s of series) row.appendChild(element("td", "num", format(day[s.key])));
      body.appendChild(row);
    }
    const thead = element("thead");
    thead.appendChild(head);
    table.append(thead, body);
    box.appendChild(table);
    details.appendChild(box);
    const wasOpen = figure.querySelector("details[open]") !== null;
    details.open = wasOpen;
    figure.replaceChildren(...parts, chart, details);
  }

  // The live board: a snapshot from GET /api/team/board, then kept by the socket's board.* messages.
  // Calls in progress tick on a local clock (set by the snapshot's as_of), not by asking the server.

  const board = { loaded: false, people: new Map(), departments: [], offset: 0 };
  let boardLoad = 0;
  let boardFailures = 0;
  let boardRetry = null;
  let boardReread = null;
  let boardClock = null;

  async function loadBoard() {
    clearTimeout(boardRetry);
    const load = ++boardLoad;
    const answer = await api("GET", "/api/team/board");
    if (load !== boardLoad) return;
    const status = $("board-status");
    if (answer.status === 403) { hideTeam(); return; }
    if (!answer.data || !answer.data.ok) {
      status.textContent = t("loadFailed");
      status.dataset.state = "error";
      if (retryable(answer.status)) boardRetry = setTimeout(loadBoard, retryDelay(++boardFailures, answer.retryAfter));
      return;
    }
    boardFailures = 0;
    status.textContent = "";
    status.dataset.state = "";
    const result = answer.data.result;
    const asOf = Date.parse(result.as_of);
    board.offset = Number.isNaN(asOf) ? 0 : asOf - Date.now();
    board.people = new Map((result.people || []).map((p) => [p.login, { ...p, calls: new Map((p.calls || []).map((c) => [c.callid, c])) }]));
    board.departments = result.departments || [];
    board.loaded = true;
    renderBoard();
  }

  function boardCall(call) {
    if (!board.loaded || !call || !call.callid) return;
    const on = new Set(call.state === "ended" ? [] : call.people || []);
    for (const person of board.people.values()) {
      if (on.has(person.login)) person.calls.set(call.callid, { ...person.calls.get(call.callid), ...call });
      else person.calls.delete(call.callid); // ended, or taken by someone else of a group
    }
    renderBoard();
  }

  function boardDnd(message) {
    const person = board.loaded && board.people.get(message.login);
    if (!person) return;
    person.dnd = message.dnd;
    renderBoard();
  }

  // "Something about call-backs changed": one re-read for a burst of them.
  function boardCallbacksChanged() {
    if (!board.loaded) return;
    clearTimeout(boardReread);
    boardReread = setTimeout(loadBoard, 1000);
  }

  function slaBadge(sla) {
    const badge = element("span", "sla");
    badge.dataset.sla = sla;
    const shape = element("span", "sla-shape");
    shape.setAttribute("aria-hidden", "true");
    badge.append(shape, document.createTextNode(t(`sla_${sla}`)));
    return badge;
  }

  function callbacksSummary(callbacks) {
    const line = element("div", "board-callbacks");
    if (!callbacks || !callbacks.open) {
      line.appendChild(element("span", "muted", t("noCallbacksShort")));
      return line;
    }
    line.dataset.sla = callbacks.sla || "";
    line.appendChild(element("span", "callbacks-open", t("toCallBack").replace("{n}", number(callbacks.open))));
    if (typeof callbacks.oldest_age_seconds === "number") line.appendChild(element("span", "callbacks-oldest", t("oldest").replace("{age}", age(callbacks.oldest_age_seconds))));
    if (callbacks.sla) line.appendChild(slaBadge(callbacks.sla));
    return line;
  }

  function callRow(call) {
    const row = element("li", "board-call");
    row.dataset.callid = call.callid;
    row.dataset.state = call.state;
    const who = call.contact_name || call.client_national || call.client || t("unknown");
    row.append(
      element("span", "call-direction", call.direction === "out" ? t("outCall") : t("inCall")),
      element("span", "call-who", who),
      element("span", "call-state", call.state === "answered" ? t("callAnswered") : t("callRinging")),
    );
    const since = call.state === "answered" && call.answered_at ? call.answered_at : call.since;
    const running = element("span", "board-duration");
    if (since) running.dataset.since = since;
    row.appendChild(running);
    return row;
  }

  function renderBoard() {
    const list = $("board-people");
    list.replaceChildren();
    for (const person of board.people.values()) {
      const item = element("li", "person");
      item.dataset.login = person.login;
      const head = element("div", "person-head");
      head.appendChild(element("strong", "person-name", person.name || person.login));
      if (person.presence && typeof person.presence.state === "string" && person.presence.state) head.appendChild(presenceBadge(person.presence));
      if (person.dnd && person.dnd.on) {
        const dnd = element("span", "dnd-badge", t("dndOn"));
        dnd.title = t("dndTitle").replace("{t}", clock(person.dnd.as_of));
        head.appendChild(dnd);
      }
      item.appendChild(head);
      if (person.calls.size) {
        const calls = element("ul", "board-calls");
        for (const call of person.calls.values()) calls.appendChild(callRow(call));
        item.appendChild(calls);
      }
      item.appendChild(callbacksSummary(person.callbacks));
      list.appendChild(item);
    }
    if (!board.people.size) list.appendChild(element("li", "empty", t("noPeople")));
    const departments = $("board-departments");
    departments.replaceChildren();
    for (const department of board.departments) {
      const item = element("li", "person department");
      item.dataset.department = department.id;
      item.append(element("strong", "person-name", department.name || department.id), callbacksSummary(department.callbacks));
      departments.appendChild(item);
    }
    if (!board.departments.length) departments.appendChild(element("li", "empty", t("noDepartments")));
    tick();
  }

  function tick() {
    const now = Date.now() + board.offset;
    for (const running of document.querySelectorAll("#board-people .board-duration[data-since]")) {
      const since = Date.parse(running.dataset.since);
      if (!Number.isNaN(since)) running.textContent = duration(Math.floor((now - since) / 1000));
    }
  }

  function translate(root) {
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
    for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }

  async function start() {
    document.documentElement.lang = lang;
    translate(document);
    if (!token) { setStatus("noToken"); return; }
    $("dialer").addEventListener("submit", (event) => { event.preventDefault(); dial($("dial-phone").value); });
    $("dnd").addEventListener("click", toggleDnd);
    const me = await api("GET", "/api/me");
    if (me.status === 401 || me.status === 403) { setStatus("expired"); return; }
    if (me.data && me.data.ok) {
      $("who").textContent = me.data.result.login;
      if (["supervisor", "admin"].includes(me.data.result.role)) enableTeam();
    }
    connect();
    loadDnd();
    loadCallbacks();
    setInterval(loadCallbacks, 60 * 1000);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
