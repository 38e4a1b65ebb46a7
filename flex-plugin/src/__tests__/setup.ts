export {}; // a module, for isolatedModules

// Build-time values the plugin reads (FLEX_APP_* from .env at `flex-plugin build`).
process.env.FLEX_APP_RELAY_URL = 'https://relay.test';

// jsdom's selector engine throws on one of the global rules Paste injects when Paste's
// auto-sizing TextArea asks for computed styles; a browser never does. Answer with empty
// styles then (the size of a textarea is not what these tests check).
const computedStyle = window.getComputedStyle.bind(window);
window.getComputedStyle = ((element: Element, pseudo?: string | null) => {
  try {
    return computedStyle(element, pseudo);
  } catch {
    return new Proxy({} as CSSStyleDeclaration, {
      get: (_target, name) => (name === 'getPropertyValue' ? () => '' : ''),
    });
  }
}) as typeof window.getComputedStyle;
