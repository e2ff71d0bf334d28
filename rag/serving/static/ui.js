() => {
  // Citation markers in answers ([1] chips) open their source card: the answer's group of sources is
  // shown, the card highlighted and scrolled into view. Markers of earlier answers keep working.
  // Runs as Gradio's `js` hook, also when the app is a web component (maybe in a shadow root).
  document.addEventListener(
    "click",
    (event) => {
      const path = event.composedPath().filter((node) => node instanceof Element);
      // Links to documents are relative to this server; in the web component the page is another site's.
      const open = path.find((node) => node.matches("a.rag-open"));
      const src = path.find((node) => node.localName === "gradio-app")?.getAttribute("src");
      if (open && src) {
        event.preventDefault();
        window.open(new URL(open.getAttribute("href"), src).href, "_blank", "noopener");
        return;
      }
      const link = path.find((node) => node.matches("a.rag-cite"));
      if (!link) return;
      event.preventDefault();
      event.stopPropagation();
      const root = link.getRootNode();
      const id = (link.getAttribute("href") || "").slice(1); // rag-src-<turn>-<n>
      const turn = id.split("-")[2];
      for (const group of root.querySelectorAll(".rag-sources")) {
        group.hidden = group.dataset.turn !== turn;
      }
      for (const card of root.querySelectorAll(".rag-source.rag-active")) {
        card.classList.remove("rag-active");
      }
      const card = root.querySelector(`#${CSS.escape(id)}`);
      if (card) {
        card.classList.add("rag-active");
        card.scrollIntoView({ block: "nearest", behavior: "smooth" });
      }
    },
    true,
  );
}
