// Draws the saga's diagram from its Mermaid source in the page (mermaid.min.js is served by the product).
mermaid.initialize({
  startOnLoad: true,
  securityLevel: "strict",
  theme: "neutral",
  state: { nodeSpacing: 90, rankSpacing: 90 },
});
