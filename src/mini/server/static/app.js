// Mini RAG chat page: plain JS, no dependencies, works offline.
//
// Answers stream from POST v1/chat/stream (falling back to v1/query/stream when the chat route is not
// deployed) as server-sent events read with fetch + ReadableStream (EventSource cannot POST). Server text is
// only ever put into the page with textContent / text nodes, never parsed as HTML.
"use strict";

(() => {
  const API = {
    chat: "v1/chat/stream",
    query: "v1/query/stream",
    documents: "v1/documents",
    job: (id) => `v1/jobs/${encodeURIComponent(id)}`,
  };
  const KEY_STORE = "mini.apiKey";
  const SESSION_STORE = "mini.sessionId";
  const POLL_MS = 500;
  const MARKER = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g; // [1], [2, 3] (as the server's citation parser)
  const MAX_PENDING = 16; // an unclosed "[" is held back this long in case it becomes a marker

  const $ = (id) => document.getElementById(id);
  const els = {
    log: $("log"),
    hint: $("empty-hint"),
    form: $("composer"),
    question: $("question"),
    send: $("send"),
    stop: $("stop"),
    newChat: $("new-chat"),
    setKey: $("set-key"),
    upload: $("upload"),
    jobs: $("jobs"),
    panel: $("source-panel"),
    panelTitle: $("source-title"),
    panelClose: $("source-close"),
    sourceName: $("source-name"),
    sourcePage: $("source-page"),
    sourcePageLabel: $("source-page-label"),
    sourceScore: $("source-score"),
    sourceScoreLabel: $("source-score-label"),
    sourceText: $("source-text"),
    keyDialog: $("key-dialog"),
    keyForm: $("key-form"),
    keyInput: $("key-input"),
    keyReason: $("key-reason"),
    announcer: $("announcer"),
  };

  // -- storage (sessionStorage, or memory where it is unavailable) -------------------------------------------

  const memory = new Map();
  const store = {
    get(name) {
      try {
        return window.sessionStorage.getItem(name);
      } catch {
        return memory.has(name) ? memory.get(name) : null;
      }
    },
    set(name, value) {
      try {
        if (value === null) window.sessionStorage.removeItem(name);
        else window.sessionStorage.setItem(name, value);
      } catch {
        if (value === null) memory.delete(name);
        else memory.set(name, value);
      }
    },
  };

  const cleanId = (id) => String(id ?? "").replace(/[^A-Za-z0-9_-]/g, "").slice(0, 128);

  function newSessionId() {
    const c = window.crypto;
    if (c && typeof c.randomUUID === "function") return cleanId(c.randomUUID());
    if (c && typeof c.getRandomValues === "function") {
      // randomUUID needs a secure context; plain http on a LAN address still has getRandomValues.
      return Array.from(c.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
    }
    return cleanId(Date.now().toString(36) + Math.random().toString(36).slice(2));
  }

  function sessionId() {
    let id = cleanId(store.get(SESSION_STORE));
    if (!id) {
      id = newSessionId();
      store.set(SESSION_STORE, id);
    }
    return id;
  }

  function announce(text) {
    els.announcer.textContent = "";
    window.setTimeout(() => {
      els.announcer.textContent = text;
    }, 50);
  }

  // -- HTTP: API key, errors ------------------------------------------------------------------------------------

  let keyPrompt = null; // one dialog at a time, shared by concurrent 401s

  function askForKey(reason) {
    if (keyPrompt) return keyPrompt;
    keyPrompt = new Promise((resolve) => {
      const finish = (key) => {
        keyPrompt = null;
        if (key === null) return resolve(false);
        store.set(KEY_STORE, key.trim() || null);
        resolve(Boolean(key.trim()));
      };
      const dialog = els.keyDialog;
      if (!dialog || typeof dialog.showModal !== "function") {
        finish(window.prompt(reason || "API key"));
        return;
      }
      els.keyReason.textContent = reason
        ? `The server answered: ${reason}. Enter an API key; it is kept in this browser tab only.`
        : "Enter an API key; it is kept in this browser tab only.";
      els.keyInput.value = store.get(KEY_STORE) || "";
      const opener = document.activeElement;
      dialog.addEventListener(
        "close",
        () => {
          finish(dialog.returnValue === "ok" ? els.keyInput.value : null);
          if (opener && typeof opener.focus === "function") opener.focus();
        },
        { once: true },
      );
      dialog.returnValue = "";
      dialog.showModal();
      els.keyInput.focus();
    });
    return keyPrompt;
  }

  function withAuth(headers) {
    const key = store.get(KEY_STORE);
    const out = { ...(headers || {}) };
    if (key) out.Authorization = `Bearer ${key}`;
    return out;
  }

  // fetch with the API key; a 401 asks for a key and retries (the body must be reusable: a string or FormData).
  async function apiFetch(url, init = {}) {
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(url, { ...init, headers: withAuth(init.headers) });
      if (response.status !== 401 || attempt >= 3) return response;
      const { message } = await errorOf(response.clone());
      if (!(await askForKey(message))) return response;
    }
  }

  // The server's error as {type, message}: its JSON body, or the status line.
  async function errorOf(response) {
    const fallback = `HTTP ${response.status}${response.statusText ? " " + response.statusText : ""}`;
    let text = "";
    try {
      text = await response.text();
    } catch {
      return { type: "http_error", message: fallback };
    }
    try {
      const body = JSON.parse(text);
      if (body && typeof body === "object") {
        const detail = typeof body.detail === "string" ? body.detail : "";
        const message = body.message || (body.error && body.error.message) || detail;
        if (message) return { type: String(body.type || "http_error"), message: String(message) };
      }
    } catch {
      /* not JSON */
    }
    return { type: "http_error", message: text.trim() ? `${fallback}: ${text.trim().slice(0, 300)}` : fallback };
  }

  const sleep = (ms) => new Promise((resolve) => window.setTimeout(resolve, ms));

  // -- SSE over fetch -----------------------------------------------------------------------------------------

  function dispatchBlock(block, onEvent) {
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    const raw = data.join("\n");
    let payload = raw;
    try {
      payload = JSON.parse(raw);
    } catch {
      /* keep the raw text */
    }
    onEvent(type, payload);
  }

  async function readEvents(body, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        buffer = buffer.replace(/\r\n|\r(?!$)/g, "\n"); // a trailing \r may be half of a \r\n
        let end;
        while ((end = buffer.indexOf("\n\n")) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          dispatchBlock(block, onEvent);
        }
      }
      buffer += decoder.decode();
      if (buffer.trim()) dispatchBlock(buffer.replace(/\r\n?/g, "\n"), onEvent);
    } finally {
      reader.releaseLock();
    }
  }

  // -- rendering answers --------------------------------------------------------------------------------------

  const messages = new WeakMap(); // article element -> AssistantMessage

  function scrollToEnd(force) {
    const log = els.log;
    const near = log.scrollHeight - log.scrollTop - log.clientHeight < 120;
    if (force || near) log.scrollTop = log.scrollHeight;
  }

  function addUserMessage(text) {
    els.hint.hidden = true;
    const article = document.createElement("article");
    article.className = "msg user";
    const role = document.createElement("h3");
    role.className = "msg-role visually-hidden";
    role.textContent = "You";
    const body = document.createElement("div");
    body.className = "msg-body";
    body.textContent = text;
    article.append(role, body);
    els.log.append(article);
    scrollToEnd(true);
  }

  function pageOf(metadata) {
    if (!metadata || typeof metadata !== "object") return null;
    for (const key of ["page", "page_number", "page_label"]) {
      const value = metadata[key];
      if (value !== undefined && value !== null && value !== "") return String(value);
    }
    return null;
  }

  // "/srv/docs/faq.jsonl#faq-water" -> "faq.jsonl#faq-water" (the panel shows the full source).
  function shortName(source) {
    const hash = source.indexOf("#");
    const path = hash === -1 ? source : source.slice(0, hash);
    const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
    return cut >= 0 && cut < path.length - 1 ? source.slice(cut + 1) : source;
  }

  class AssistantMessage {
    constructor() {
      this.text = "";
      this.rendered = 0; // characters of `text` turned into nodes; the rest is the pending tail
      this.sources = new Map(); // number -> {number, id, source, score, text, metadata}
      this.citations = new Map(); // number -> {number, chunk_id, source, text, score}
      this.sourcesKnown = false; // until the `sources` event, any [n] may still be a citation
      this.finished = false;
      this.frame = 0;

      this.article = document.createElement("article");
      this.article.className = "msg assistant";
      this.article.setAttribute("aria-busy", "true");
      const role = document.createElement("h3");
      role.className = "msg-role visually-hidden";
      role.textContent = "Assistant";
      this.body = document.createElement("div");
      this.body.className = "msg-body";
      this.body.dataset.state = "streaming";
      this.content = document.createElement("div");
      this.content.className = "answer-text";
      this.pending = document.createTextNode("");
      this.content.append(this.pending);
      this.typing = document.createElement("span");
      this.typing.className = "typing";
      this.typing.setAttribute("aria-hidden", "true"); // decoration; aria-busy tells assistive tech
      this.typing.append(document.createElement("span"), document.createElement("span"), document.createElement("span"));
      this.note = document.createElement("p");
      this.note.className = "msg-note";
      this.note.hidden = true;
      this.body.append(this.content, this.typing, this.note);
      this.details = document.createElement("details");
      this.details.className = "sources";
      this.details.hidden = true;
      this.summary = document.createElement("summary");
      this.list = document.createElement("ol");
      this.list.className = "source-list";
      this.details.append(this.summary, this.list);
      this.article.append(role, this.body, this.details);
      messages.set(this.article, this);

      // Only the newest assistant message carries data-testid="answer".
      for (const old of els.log.querySelectorAll('[data-testid="answer"]')) old.removeAttribute("data-testid");
      this.body.dataset.testid = "answer";
      els.log.append(this.article);
      scrollToEnd(true);
    }

    handle(type, data) {
      if (this.finished) return;
      switch (type) {
        case "sources":
          this.setSources(Array.isArray(data) ? data : []);
          break;
        case "token":
          this.append(data && typeof data === "object" ? String(data.text ?? "") : String(data ?? ""));
          break;
        case "citation":
          if (data && typeof data === "object") this.cite(data);
          break;
        case "done":
          this.complete(data && typeof data === "object" ? data : {});
          break;
        case "error": {
          const message = data && typeof data === "object" ? data.message || data.type : String(data || "");
          this.fail(message || "the server reported an error without a message");
          break;
        }
        default:
          break; // unknown events are ignored (forward compatible)
      }
    }

    setSources(list) {
      this.sourcesKnown = true;
      this.sources.clear();
      this.list.replaceChildren();
      for (const hit of list) {
        if (!hit || typeof hit !== "object") continue;
        const number = Number(hit.number);
        if (!Number.isInteger(number)) continue;
        this.sources.set(number, hit);
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "source-item";
        button.dataset.number = String(number);
        button.setAttribute("aria-controls", "source-panel");
        const num = document.createElement("span");
        num.className = "source-num";
        num.textContent = `[${number}]`;
        const name = document.createElement("span");
        name.className = "source-name";
        const page = pageOf(hit.metadata);
        const source = String(hit.source ?? "unknown source");
        name.textContent = shortName(source) + (page ? ` · p. ${page}` : "");
        name.title = source;
        const score = document.createElement("span");
        score.className = "source-score";
        if (typeof hit.score === "number") score.textContent = hit.score.toFixed(3);
        const badge = document.createElement("span");
        badge.className = "cited-badge";
        badge.textContent = "cited";
        badge.hidden = true;
        button.append(num, name, badge, score);
        item.append(button);
        this.list.append(item);
      }
      this.summary.textContent = `Sources (${this.sources.size})`;
      this.details.hidden = this.sources.size === 0;
      // Markers streamed before the sources arrived become buttons now.
      if (this.rendered > 0) this.rerender();
    }

    cite(citation) {
      const number = Number(citation.number);
      if (!Number.isInteger(number)) return;
      this.citations.set(number, citation);
      const button = this.list.querySelector(`.source-item[data-number="${number}"]`);
      if (button) {
        button.classList.add("cited");
        button.querySelector(".cited-badge").hidden = false;
      }
    }

    append(delta) {
      if (!delta) return;
      this.text += delta;
      this.typing.hidden = true;
      if (!this.frame) {
        this.frame = window.requestAnimationFrame(() => {
          this.frame = 0;
          this.render(false);
        });
      }
    }

    // Turn text into nodes up to a safe point: an unclosed "[" near the end waits for its "]".
    render(final) {
      let cut = this.text.length;
      if (!final) {
        const open = this.text.lastIndexOf("[");
        if (open >= this.rendered && !this.text.includes("]", open) && this.text.length - open <= MAX_PENDING) {
          cut = open;
        }
      }
      if (cut > this.rendered) {
        this.content.insertBefore(this.fragment(this.text.slice(this.rendered, cut)), this.pending);
        this.rendered = cut;
      }
      this.pending.data = this.text.slice(this.rendered);
      scrollToEnd(false);
    }

    rerender() {
      if (this.frame) {
        window.cancelAnimationFrame(this.frame);
        this.frame = 0;
      }
      this.content.replaceChildren(this.pending);
      this.rendered = 0;
      this.render(this.finished);
    }

    isCitable(number) {
      if (number < 1) return false;
      return !this.sourcesKnown || this.sources.has(number) || this.citations.has(number);
    }

    fragment(text) {
      const out = document.createDocumentFragment();
      let last = 0;
      MARKER.lastIndex = 0;
      for (let match; (match = MARKER.exec(text)); ) {
        const numbers = match[1].split(",").map((part) => Number(part.trim()));
        if (!numbers.some((n) => this.isCitable(n))) continue;
        out.append(document.createTextNode(text.slice(last, match.index)));
        const group = document.createElement("span");
        group.className = "cite-group";
        group.append("[");
        numbers.forEach((number, i) => {
          if (i > 0) group.append(", ");
          if (!this.isCitable(number)) {
            group.append(String(number));
            return;
          }
          const button = document.createElement("button");
          button.type = "button";
          button.className = "cite";
          button.textContent = String(number);
          button.dataset.number = String(number);
          button.dataset.testid = `citation-${number}`;
          button.setAttribute("aria-controls", "source-panel");
          const hit = this.sources.get(number);
          button.setAttribute("aria-label", `Source ${number}${hit && hit.source ? ": " + hit.source : ""}`);
          group.append(button);
        });
        group.append("]");
        out.append(group);
        last = match.index + match[0].length;
      }
      out.append(document.createTextNode(text.slice(last)));
      return out;
    }

    entry(number) {
      const hit = this.sources.get(number);
      const citation = this.citations.get(number);
      if (!hit && !citation) return null;
      return {
        number,
        source: (hit && hit.source) || (citation && citation.source) || "unknown source",
        text: (hit && hit.text) || (citation && citation.text) || "",
        score: hit ? hit.score : citation.score,
        metadata: (hit && hit.metadata) || {},
      };
    }

    complete(data) {
      if (typeof data.answer === "string" && data.answer !== this.text) {
        this.text = data.answer;
        this.finished = true;
        this.rerender();
      }
      if (Array.isArray(data.citations)) for (const c of data.citations) if (c && typeof c === "object") this.cite(c);
      const sid = cleanId(data.session_id);
      if (sid) store.set(SESSION_STORE, sid);
      this.end("done");
      if (!this.text.trim()) this.showNote("The server sent an empty answer.", "info");
      announce("Answer complete.");
    }

    fail(message) {
      this.showNote(`Error: ${message}`, "error");
      this.end("error");
      announce(`Error: ${message}`);
    }

    stopped() {
      this.showNote("Stopped.", "info");
      this.end("stopped");
    }

    showNote(text, kind) {
      this.note.textContent = text;
      this.note.className = `msg-note ${kind}`;
      if (kind === "error") this.note.setAttribute("role", "alert");
      this.note.hidden = false;
    }

    end(state) {
      this.finished = true;
      this.render(true);
      this.typing.hidden = true;
      this.body.dataset.state = state;
      this.article.setAttribute("aria-busy", "false");
      scrollToEnd(false);
    }
  }

  // -- asking ----------------------------------------------------------------------------------------------------

  let chatAvailable = true; // false once v1/chat/stream turned out not to be deployed
  let current = null; // {controller, message} while a question streams

  function setStreaming(on) {
    const hadFocus = document.activeElement === els.stop;
    els.send.hidden = on;
    els.stop.hidden = !on;
    els.log.setAttribute("aria-busy", on ? "true" : "false");
    if (!on && hadFocus) els.question.focus();
  }

  async function postStream(url, payload, signal) {
    return apiFetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(payload),
      signal,
    });
  }

  async function openStream(question, signal) {
    if (chatAvailable) {
      for (let attempt = 0; attempt < 2; attempt++) {
        const response = await postStream(API.chat, { session_id: sessionId(), message: question }, signal);
        // 404 (no route) or 405 (the static page mount answering a POST): chat is not deployed here.
        if (response.status !== 404 && response.status !== 405) return response;
        const { message } = await errorOf(response);
        if (response.status === 404 && attempt === 0 && /session/i.test(message)) {
          store.set(SESSION_STORE, newSessionId()); // an expired/unknown session: start a new one
          continue;
        }
        break;
      }
      chatAvailable = false;
    }
    return postStream(API.query, { question }, signal);
  }

  async function ask(question) {
    addUserMessage(question);
    const message = new AssistantMessage();
    const controller = new AbortController();
    current = { controller, message };
    setStreaming(true);
    try {
      const response = await openStream(question, controller.signal);
      if (!response.ok) {
        const { message: text } = await errorOf(response);
        message.fail(text);
        return;
      }
      if (!response.body) {
        message.fail("the browser cannot read streamed responses");
        return;
      }
      await readEvents(response.body, (type, data) => message.handle(type, data));
      if (!message.finished) message.fail("the connection closed before the answer was complete");
    } catch (err) {
      if (message.finished) return; // e.g. Stop pressed after `done`: the answer stands
      if (controller.signal.aborted) message.stopped();
      else message.fail(`the connection to the server failed (${err && err.message ? err.message : err})`);
    } finally {
      if (current && current.controller === controller) current = null;
      setStreaming(false);
    }
  }

  function submit() {
    if (current) return; // one question at a time; Stop first
    const question = els.question.value.trim();
    if (!question) {
      els.question.focus();
      return;
    }
    els.question.value = "";
    autoGrow();
    ask(question);
  }

  function autoGrow() {
    const q = els.question;
    q.style.height = "auto";
    q.style.height = `${Math.min(q.scrollHeight, 240)}px`;
  }

  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  els.question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  });
  els.question.addEventListener("input", autoGrow);
  els.stop.addEventListener("click", () => {
    if (current) current.controller.abort(); // disconnects: the server cancels the pipeline
  });
  els.newChat.addEventListener("click", () => {
    if (current) current.controller.abort();
    store.set(SESSION_STORE, newSessionId());
    for (const node of [...els.log.children]) if (node !== els.hint) node.remove();
    els.hint.hidden = false;
    closePanel(false);
    announce("New chat started.");
    els.question.focus();
  });
  els.setKey.addEventListener("click", () => {
    askForKey("");
  });

  // -- source panel ----------------------------------------------------------------------------------------------

  let panelOpener = null;

  function showSource(entry, opener) {
    els.panelTitle.textContent = `Source [${entry.number}]`;
    els.sourceName.textContent = entry.source;
    const page = pageOf(entry.metadata);
    els.sourcePage.textContent = page || "";
    els.sourcePage.hidden = els.sourcePageLabel.hidden = !page;
    const hasScore = typeof entry.score === "number";
    els.sourceScore.textContent = hasScore ? entry.score.toFixed(3) : "";
    els.sourceScore.hidden = els.sourceScoreLabel.hidden = !hasScore;
    els.sourceText.textContent = entry.text || "(this source has no text)";
    els.panel.hidden = false;
    document.body.classList.add("panel-open");
    for (const b of document.querySelectorAll('[aria-expanded="true"]')) b.setAttribute("aria-expanded", "false");
    if (opener) opener.setAttribute("aria-expanded", "true");
    panelOpener = opener;
    els.panel.focus();
  }

  function closePanel(restoreFocus) {
    if (els.panel.hidden) return;
    els.panel.hidden = true;
    document.body.classList.remove("panel-open");
    if (panelOpener) {
      panelOpener.setAttribute("aria-expanded", "false");
      if (restoreFocus && panelOpener.isConnected) panelOpener.focus();
    }
    panelOpener = null;
  }

  els.log.addEventListener("click", (event) => {
    const button = event.target.closest("button.cite, button.source-item");
    if (!button) return;
    const article = button.closest("article.msg");
    const message = article && messages.get(article);
    if (!message) return;
    const number = Number(button.dataset.number);
    const entry = message.entry(number);
    showSource(entry || { number, source: "unavailable", text: `Source ${number} was not sent by the server.` }, button);
  });
  els.panelClose.addEventListener("click", () => closePanel(true));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !els.panel.hidden && !(els.keyDialog && els.keyDialog.open)) closePanel(true);
  });

  // -- uploads -----------------------------------------------------------------------------------------------

  class UploadJob {
    constructor(files) {
      this.item = document.createElement("li");
      this.item.className = "job";
      const names = document.createElement("p");
      names.className = "job-files";
      const shown = files.slice(0, 3).map((f) => f.name);
      names.textContent = shown.join(", ") + (files.length > 3 ? ` and ${files.length - 3} more` : "");
      this.status = document.createElement("p");
      this.status.className = "job-status";
      this.status.setAttribute("role", "status");
      this.bar = document.createElement("progress");
      this.bar.className = "job-progress";
      this.failures = document.createElement("ul");
      this.failures.className = "job-failures";
      this.failures.hidden = true;
      this.item.append(names, this.status, this.bar, this.failures);
      for (const old of els.jobs.querySelectorAll('[data-testid="job-status"]')) old.removeAttribute("data-testid");
      this.status.dataset.testid = "job-status";
      els.jobs.prepend(this.item);
      this.set("uploading", `uploading ${files.length} file${files.length === 1 ? "" : "s"}…`);
    }

    set(state, text) {
      this.item.dataset.state = state;
      this.status.dataset.state = state;
      this.status.textContent = text;
      if (state === "done" || state === "failed") this.bar.hidden = true;
    }

    progress(p) {
      if (!p || typeof p !== "object") return;
      const total = Number(p.chunks_total) || 0;
      if (total > 0) {
        this.bar.max = total;
        this.bar.value = Math.min(Number(p.chunks_written) || 0, total);
      } else {
        this.bar.removeAttribute("value");
      }
    }

    update(job) {
      const p = (job && job.progress) || {};
      this.progress(p);
      const filesTotal = p.files_total ?? "?";
      const counts = `files ${p.files_done ?? 0}/${filesTotal}, chunks written ${p.chunks_written ?? 0}/${p.chunks_total ?? 0}`;
      switch (job.status) {
        case "queued":
          this.set("queued", "queued: waiting for a free worker…");
          break;
        case "running":
          this.set("running", `running: ${counts}`);
          break;
        case "done":
          this.finish(job);
          break;
        case "failed":
          this.fail(job.error, job.report);
          break;
        default:
          this.set("running", `${String(job.status || "unknown")}: ${counts}`);
      }
    }

    finish(job) {
      const r = job.report && typeof job.report === "object" ? job.report : {};
      const n = (name) => Number(r[`files_${name}`] ?? r[name] ?? 0);
      const chunks = r.chunks_added ?? (job.progress && job.progress.chunks_written);
      let text = `done: ${n("added")} added, ${n("updated")} updated, ${n("skipped")} skipped, ${n("failed")} failed`;
      if (chunks !== undefined && chunks !== null) text += ` (${chunks} chunks added)`;
      this.set("done", text);
      this.listFailures(r.failures);
      announce(`Upload ${text}`);
    }

    fail(error, report) {
      let message = "";
      if (typeof error === "string") message = error;
      else if (error && typeof error === "object") message = error.message || error.type || "";
      this.set("failed", `failed: ${message || "the job failed without a message"}`);
      if (report && typeof report === "object") this.listFailures(report.failures);
      announce(`Upload failed${message ? ": " + message : ""}`);
    }

    listFailures(failures) {
      if (!Array.isArray(failures) || !failures.length) return;
      this.failures.replaceChildren();
      for (const f of failures) {
        const li = document.createElement("li");
        if (f && typeof f === "object") li.textContent = `${f.path || f.source || "?"}: ${f.reason || f.message || f.error_type || "failed"}`;
        else li.textContent = String(f);
        this.failures.append(li);
      }
      this.failures.hidden = false;
    }
  }

  async function upload(files) {
    const job = new UploadJob(files);
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    form.append("session_id", sessionId());
    let response;
    try {
      response = await apiFetch(API.documents, { method: "POST", body: form });
    } catch (err) {
      job.fail(`could not reach the server (${err && err.message ? err.message : err})`);
      return;
    }
    if (response.status === 404 || response.status === 405) {
      job.fail("this server does not accept uploads (POST /v1/documents is not available)");
      return;
    }
    if (!response.ok) {
      job.fail((await errorOf(response)).message);
      return;
    }
    let accepted;
    try {
      accepted = await response.json();
    } catch {
      job.fail("the server's answer to the upload was not JSON");
      return;
    }
    if (!accepted || !accepted.job_id) {
      job.fail("the server did not return a job id");
      return;
    }
    job.update({ status: accepted.status || "queued", progress: accepted.progress });
    await poll(job, String(accepted.job_id));
  }

  async function poll(job, id) {
    let misses = 0;
    for (;;) {
      await sleep(POLL_MS);
      let response;
      try {
        response = await apiFetch(API.job(id));
      } catch (err) {
        if (++misses >= 10) return job.fail(`lost contact with the server (${err && err.message ? err.message : err})`);
        continue;
      }
      if (response.status === 404) return job.fail("the server no longer knows this job");
      if (!response.ok) {
        const { message } = await errorOf(response);
        if (response.status < 500 || ++misses >= 10) return job.fail(message);
        continue;
      }
      misses = 0;
      let data;
      try {
        data = await response.json();
      } catch {
        return job.fail("the job status was not JSON");
      }
      job.update(data);
      if (data.status === "done" || data.status === "failed") return;
    }
  }

  els.upload.addEventListener("change", () => {
    const files = Array.from(els.upload.files || []);
    els.upload.value = "";
    if (files.length) upload(files);
  });

  els.question.focus();
})();
