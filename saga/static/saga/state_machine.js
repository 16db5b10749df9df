// Draws the saga's state machine from the Mermaid source in its admin page (mermaid.min.js is served by the
// product). Loaded in the head, so it waits for the page.
window.addEventListener("DOMContentLoaded", function () {
  mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
  mermaid.run({ querySelector: "#saga-state-machine" });
});
