// The compact chat inside the widget's iframe. It streams answers from this server's API and shows
// each answer with its citations and the passages behind them. Everything from the model or a
// document is inserted as text (textContent), never as HTML.
(() => {
  const params = new URLSearchParams(location.search);
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  const theme = params.get("theme");
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  const title = params.get("title");
  if (title) {
    document.title = title;
    document.getElementById("title").textContent = title;
  }

  const log = document.getElementById("log");
  const form = document.getElementById("form");
  const input = document.getElementById("question");
  const send = document.getElementById("send");
  let history = [];
  let running = null; // AbortController of the answer in progress
  const CONTEXT = 160; // characters of passage shown around the highlighted quote

  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const scroll = () => log.scrollTo({ top: log.scrollHeight });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  document.getElementById("clear").addEventListener("click", () => {
    if (running) running.abort();
    history = [];
    log.replaceChildren(el("p", "intro", "New conversation. Ask a question about the documents."));
    input.focus();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const question = input.value.trim();
    if (!question || running) return;
    input.value = "";
    ask(question);
  });

  async function ask(question) {
    log.querySelector(".intro")?.remove();
    const asked = el("div", "msg user", question);
    log.append(asked);
    const bubble = el("div", "msg assistant pending");
    const draft = el("div", "text", "Searching the documents…");
    bubble.append(draft);
    log.append(bubble);
    scroll();
    running = new AbortController();
    send.disabled = true;
    const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
    if (key) headers["X-API-Key"] = key;
    try {
      const response = await fetch("api/ask/stream", {
        method: "POST",
        headers,
        body: JSON.stringify({ question, history }),
        signal: running.signal,
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.detail || `the server answered ${response.status}`);
      }
      let text = "";
      for await (const [name, data] of events(response.body)) {
        if (name === "sources") {
          // Before the model writes anything, show what it is reading (seconds, on a slow CPU).
          draft.textContent = `${data.activity}…`; // "Reading 4 passages from 2 documents", "Summarising 4 documents"
          const reading = el("ol", "reading");
          for (const title of new Set(data.sources.map((s) => s.title))) reading.append(el("li", "", title));
          bubble.append(reading);
          scroll();
        } else if (name === "token") {
          text += data.text;
          draft.textContent = text;
          scroll();
        } else if (name === "answer") {
          bubble.replaceWith(renderAnswer(data));
          history.push({ question: data.question, answer: data.answer });
          asked.scrollIntoView({ block: "start" }); // the question, then as much of its answer as fits
        } else if (name === "error") {
          throw new Error(data.detail);
        }
      }
    } catch (error) {
      if (error.name !== "AbortError") {
        bubble.className = "msg assistant error";
        draft.textContent = `Sorry, no answer: ${error.message}`;
      }
    } finally {
      running = null;
      send.disabled = false;
    }
  }

  // Server-Sent Events from a fetch body: yields [event name, parsed data].
  async function* events(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        if (data.length) yield [name, JSON.parse(data.join("\n"))];
      }
    }
  }

  function renderAnswer(answer) {
    const bubble = el("div", answer.abstained ? "msg assistant final abstain" : "msg assistant final");
    if (answer.abstained) bubble.append(el("div", "label", "Not in the documents"));
    const text = el("div", "text");
    const sources = el("ol", "sources");
    const cited = new Map(answer.citations.map((c) => [c.n, c]));
    // Split on markers; each cited [n] becomes a button that highlights source n below.
    for (const part of answer.answer.split(/(\[\d{1,2}\])/)) {
      const n = /^\[(\d{1,2})\]$/.exec(part);
      if (n && cited.has(Number(n[1]))) {
        const chip = el("button", "cite", n[1]);
        chip.type = "button";
        chip.title = cited.get(Number(n[1])).title;
        chip.addEventListener("click", () => {
          for (const item of sources.children) item.classList.toggle("active", item.dataset.n === n[1]);
          sources.querySelector(`[data-n="${n[1]}"]`)?.scrollIntoView({ block: "nearest", behavior: "smooth" });
        });
        text.append(chip);
      } else {
        text.append(document.createTextNode(part));
      }
    }
    bubble.append(text);
    for (const c of answer.citations) {
      const item = el("li", "source");
      item.dataset.n = String(c.n);
      const head = el("div", "head");
      head.append(el("span", "n", String(c.n)), el("span", "title", c.title));
      if (c.place) head.append(el("span", "place", c.place)); // "p. 4", "slide 3": where in the file
      // The quote in a little context: the panel is small, so the highlight must be in view.
      const qs = Math.max(0, c.quote_start - c.start);
      const qe = Math.max(qs, Math.min(c.text.length, c.quote_end - c.start));
      const before = c.text.slice(0, qs);
      const after = c.text.slice(qe);
      const passage = el("p", "passage");
      passage.append(
        before.length > CONTEXT ? `…${before.slice(-CONTEXT).replace(/^\S*\s/, "")}` : before,
        el("mark", "", c.text.slice(qs, qe)),
        after.length > CONTEXT ? `${after.slice(0, CONTEXT).replace(/\s\S*$/, "")}…` : after,
      );
      const open = el("a", "open", "Open document ↗");
      open.href = `documents/${encodeURIComponent(c.doc_id)}?${new URLSearchParams({
        start: c.start, end: c.end, quote_start: c.quote_start, quote_end: c.quote_end,
      })}#cited`;
      open.target = "_blank";
      open.rel = "noopener";
      item.append(head, el("div", "meta", c.source), passage, open);
      sources.append(item);
    }
    if (answer.citations.length) bubble.append(sources);
    const t = answer.timings;
    bubble.append(el("div", "timings", `${(t.total_ms / 1000).toFixed(1)} s`));
    return bubble;
  }
})();
