// The one-snippet widget: <script src="http://HOST:7860/widget.js" async></script>
// Options as data- attributes on that script tag: data-title, data-position ("bottom-right" or
// "bottom-left"), data-theme ("light", "dark" or "auto"), data-api-key (when the server requires one).
// It adds a launcher button that opens a compact chat panel: an iframe of this server's /widget page,
// which talks only to its own server. The server allows the iframe only on allowlisted origins.
(() => {
  const script = document.currentScript || document.querySelector('script[src$="/widget.js"]');
  if (!script || document.getElementById("rag-widget")) return;
  const options = script.dataset;
  const title = options.title || "Ask the documents";
  const side = options.position === "bottom-left" ? "left" : "right";
  const theme = ["light", "dark", "auto"].includes(options.theme) ? options.theme : "auto";
  const page = new URL("widget", script.src);
  page.search = new URLSearchParams({ title, theme }).toString();
  if (options.apiKey) page.hash = new URLSearchParams({ key: options.apiKey }).toString();

  const host = document.createElement("div");
  host.id = "rag-widget";
  const root = host.attachShadow({ mode: "open" });
  const style = document.createElement("style");
  style.textContent = `
    :host { all: initial; }
    .launcher, .panel { position: fixed; ${side}: 20px; z-index: 2147483000; }
    .launcher {
      bottom: 20px; width: 56px; height: 56px; border-radius: 50%; border: none; cursor: pointer;
      background: #4f46e5; color: white; box-shadow: 0 6px 20px rgba(15, 23, 42, 0.3);
      display: flex; align-items: center; justify-content: center;
    }
    .launcher:hover { background: #4338ca; }
    .launcher svg { width: 26px; height: 26px; }
    .panel {
      bottom: 88px; width: min(400px, calc(100vw - 40px)); height: min(600px, calc(100vh - 110px));
      border-radius: 14px; overflow: hidden; box-shadow: 0 12px 40px rgba(15, 23, 42, 0.35); background: white;
    }
    .panel[hidden] { display: none; }
    iframe { border: 0; width: 100%; height: 100%; display: block; }`;
  const chat = '<path d="M4 4h16v12H7l-3 3z" fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round"/>';
  const close = '<path d="M6 6l12 12M18 6L6 18" stroke="currentColor" stroke-width="2" stroke-linecap="round"/>';
  const launcher = document.createElement("button");
  launcher.className = "launcher";
  launcher.type = "button";
  launcher.setAttribute("aria-label", title);
  launcher.setAttribute("aria-expanded", "false");
  launcher.innerHTML = `<svg viewBox="0 0 24 24" aria-hidden="true">${chat}</svg>`;
  const panel = document.createElement("div");
  panel.className = "panel";
  panel.hidden = true;
  root.append(style, panel, launcher);

  launcher.addEventListener("click", () => {
    if (!panel.firstChild) {
      const frame = document.createElement("iframe");
      frame.title = title;
      frame.src = page.href;
      panel.append(frame);
    }
    panel.hidden = !panel.hidden;
    launcher.setAttribute("aria-expanded", String(!panel.hidden));
    launcher.firstChild.innerHTML = panel.hidden ? chat : close;
  });
  (document.body || document.documentElement).append(host);
})();
