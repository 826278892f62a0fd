// A small, safe Markdown renderer for model text: it only creates our own elements and sets
// text with textContent (never innerHTML), so whatever the model writes stays text.
// Supported: fenced code blocks (with a copy button), headings, bullet and numbered lists,
// block quotes, paragraphs, `inline code`, **bold**, *italic*. Links stay plain text.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_) {
    // Clipboard API refused (permissions): fall back to a hidden textarea and execCommand.
    const area = el("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const ok = document.execCommand && document.execCommand("copy");
    area.remove();
    return !!ok;
  }
}

export function copyButton(getText, label = "Copy") {
  const button = el("button", "copy", label);
  button.type = "button";
  button.setAttribute("aria-label", label === "Copy" ? "Copy to clipboard" : label);
  button.addEventListener("click", async () => {
    const ok = await copyText(getText());
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => { button.textContent = label; }, 1200);
  });
  return button;
}

// Inline spans: `code`, **bold**, *italic* / _italic_. Everything else is text.
const INLINE = /(`+)([^`]+?)\1|\*\*([^*]+?)\*\*|__([^_]+?)__|\*([^*\s][^*]*?)\*|\b_([^_\s][^_]*?)_\b/g;

export function renderInline(text, parent) {
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
    if (m[2] !== undefined) parent.append(el("code", null, m[2]));
    else if (m[3] !== undefined || m[4] !== undefined) parent.append(el("strong", null, m[3] ?? m[4]));
    else parent.append(el("em", null, m[5] ?? m[6]));
    last = m.index + m[0].length;
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  return parent;
}

function codeBlock(lang, lines) {
  const wrap = el("div", "codeblock");
  const bar = el("div", "codebar");
  bar.append(el("span", "lang", lang || "code"));
  const code = el("code", null, lines.join("\n"));
  if (lang) code.dataset.lang = lang;
  bar.append(copyButton(() => code.textContent, "Copy"));
  const pre = el("pre");
  pre.append(code);
  wrap.append(bar, pre);
  return wrap;
}

/** Render markdown `text` into a new DocumentFragment. An unclosed fence (while streaming) is a code block. */
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  let para = [], list = null, i = 0;
  const flushPara = () => {
    if (para.length) out.append(renderInline(para.join(" "), el("p")));
    para = [];
  };
  const flushList = () => { if (list) out.append(list.node); list = null; };
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+#.-]*)\s*$/);
    if (fence) {
      flushPara(); flushList();
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++;  // the closing fence (or past the end)
      out.append(codeBlock(fence[2], body));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    const bullet = line.match(/^\s*[-*+]\s+(.*)$/);
    const numbered = line.match(/^\s*(\d{1,9})[.)]\s+(.*)$/);
    const quote = line.match(/^\s*>\s?(.*)$/);
    if (heading) {
      flushPara(); flushList();
      out.append(renderInline(heading[2], el("h" + Math.min(6, heading[1].length + 2))));
    } else if (bullet || numbered) {
      flushPara();
      const tag = bullet ? "ul" : "ol";
      if (!list || list.tag !== tag) {
        flushList();
        list = { tag, node: el(tag) };
        if (numbered && numbered[1] !== "1") list.node.start = Number(numbered[1]);
      }
      list.node.append(renderInline(bullet ? bullet[1] : numbered[2], el("li")));
    } else if (quote) {
      flushPara(); flushList();
      out.append(renderInline(quote[1], el("blockquote")));
    } else if (!line.trim()) {
      flushPara(); flushList();
    } else {
      flushList();
      para.push(line.trim());
    }
    i++;
  }
  flushPara(); flushList();
  return out;
}
