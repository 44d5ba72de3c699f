// Markdown from the server or the user, rendered so that nothing in it can execute:
// raw HTML is shown as text, and the HTML that marked produces goes through DOMPurify
// (only http(s), mailto and relative links survive; no inline styles).
import { Marked } from './vendor/marked.esm.js';

const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const marked = new Marked({ gfm: true, breaks: false, async: false });
marked.use({ renderer: { html: (token) => escapeHtml(token.text ?? token.raw ?? '') } });

let purify = null;
function sanitizer() {
  if (purify) return purify;
  purify = window.DOMPurify;
  purify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('rel', 'noopener noreferrer nofollow');
      node.setAttribute('target', '_blank');
    }
  });
  return purify;
}

const CONFIG = {
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#|\/(?!\/))/i,
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe', 'object', 'embed', 'svg', 'math'],
  FORBID_ATTR: ['style', 'class', 'id'],
};

/** Safe HTML for a Markdown string. */
export function renderMarkdown(text) {
  return sanitizer().sanitize(marked.parse(text), CONFIG);
}

/** Replaces `el`'s content with the rendered Markdown. */
export function setMarkdown(el, text) {
  el.innerHTML = renderMarkdown(text);
}

/**
 * A Markdown view that grows: each top-level block (paragraph, table, list…) is
 * rendered once and kept while its source is unchanged, so a streamed answer costs the
 * new and the last block per update instead of the whole text.
 */
export class StreamingMarkdown {
  constructor(el) {
    this.el = el;
    this.blocks = [];
  }

  update(text) {
    const tokens = marked.lexer(text);
    const list = tokens.filter((t) => t.type !== 'space');
    let i = 0;
    while (i < list.length && i < this.blocks.length && this.blocks[i].raw === list[i].raw) i += 1;
    for (const b of this.blocks.splice(i)) for (const n of b.nodes) n.remove();
    for (; i < list.length; i += 1) {
      const one = [list[i]];
      one.links = tokens.links;
      const frag = sanitizer().sanitize(marked.parser(one), { ...CONFIG, RETURN_DOM_FRAGMENT: true });
      const nodes = [...frag.childNodes];
      this.el.append(frag);
      this.blocks.push({ raw: list[i].raw, nodes });
    }
  }
}
