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
 * rendered once and kept while its source is unchanged, and only the text from the
 * start of the last block on is parsed again, so a streamed answer costs its newest
 * block per update instead of the whole text. (A reference-style link defined after
 * the block that uses it is the one thing this reads differently from a full parse.)
 */
export class StreamingMarkdown {
  constructor(el) {
    this.el = el;
    this.blocks = []; // { raw, start, nodes }
    this.source = '';
  }

  reset() {
    for (const b of this.blocks) for (const n of b.nodes) n.remove();
    this.blocks = [];
    this.source = '';
  }

  /**
   * Shows `input`; renders new blocks for at most `budgetMs` and returns false when
   * some are left for a next call (which picks up where this one stopped).
   */
  update(input, budgetMs = Infinity) {
    const t0 = performance.now();
    const text = input.replace(/\r\n?/g, '\n');
    if (!text.startsWith(this.source)) this.reset();
    const last = this.blocks.at(-1);
    const from = last ? last.start : 0;
    const tail = text.slice(from);
    const tokens = marked.lexer(tail);
    let pos = from;
    const fresh = [];
    for (const t of tokens) {
      if (t.type !== 'space') fresh.push({ token: t, start: pos });
      pos += t.raw.length;
    }
    if (pos !== text.length && from > 0) {
      // The lexer did not account for every character: parse the whole text instead.
      this.reset();
      return this.update(text, budgetMs);
    }
    let i = 0;
    if (last) {
      if (fresh.length && fresh[0].token.raw === last.raw) i = 1;
      else { for (const n of last.nodes) n.remove(); this.blocks.pop(); }
    }
    for (; i < fresh.length; i += 1) {
      if (performance.now() - t0 > budgetMs && this.blocks.length > 0) {
        this.source = text.slice(0, this.blocks.at(-1).start);
        return false;
      }
      const one = [fresh[i].token];
      one.links = tokens.links;
      const frag = sanitizer().sanitize(marked.parser(one), { ...CONFIG, RETURN_DOM_FRAGMENT: true });
      const nodes = [...frag.childNodes];
      this.el.append(frag);
      this.blocks.push({ raw: fresh[i].token.raw, start: fresh[i].start, nodes });
    }
    this.source = text;
    return true;
  }
}
