/* Tidings related-stories widget: finds [data-tidings-related] containers, fetches each
 * related block lazily, renders it with DOM APIs only (never innerHTML with data), and
 * reports impressions and clicks to /v1/events. No dependencies. It must never break the
 * host page: every failure leaves the container showing what it held, and throws nothing.
 *
 *   <div data-tidings-related data-url="https://site.example/article" data-k="4"></div>
 *   <script async src="https://tidings.example/widget.js"></script>
 *
 * Optional attributes: data-api (API base; default: where this script came from, less
 * "widget.js"), the block's words data-heading, data-untitled, data-by and data-new-tab-label
 * (default: English, see WORDS), data-heading-level (2-6), data-theme ("light" | "dark"; default: the host
 * page's, read from the background behind the container, else the text colour it inherits); the API's filters data-category,
 * data-site, data-exclude-site, data-max-age-days (blank: unset); data-personal (present: the
 * block is this reader's, without what they read or muted); for links to other sites than the
 * page's, data-new-tab (present: a new tab) and data-rel (e.g. "nofollow").
 *
 * Each block is rendered in an open shadow root on its container (in a custom element, on a
 * child of the widget's own), so the host page's CSS cannot restyle it and its CSS cannot
 * restyle the page. Whatever the container already held is fallback content: shown until
 * the block renders, and for good if the API fails; an empty container shows a placeholder
 * of the block's size meanwhile. A new data-url, canonical link or address (pushState)
 * brings the new article's block: single-page apps.
 */
(function () {
  "use strict";
  // Included twice (two tags, or one URL with two query strings that the cache sees as two
  // files): the first copy does the work, or containers would get two blocks and every
  // impression would count twice. A later copy only looks for new containers, and not before
  // the document is parsed, which the first copy waits for too: run while a page was still
  // streaming in, it put a placeholder over a container whose server-rendered block was yet
  // to come, and asked for the block again.
  if (window.TidingsWidget && typeof window.TidingsWidget.scan === "function") {
    if (document.readyState !== "loading") window.TidingsWidget.scan();
    return;
  }
  var P = "tdg-";
  var READER_KEY = "tidings.reader";
  var FETCH_TIMEOUT_MS = 8000;
  // Stories a block asks for when its container has no data-k. The API serves this file with
  // min(4, its api.max_k) here (api/app.py, widget_script): a fixed 4 was a 422 from an API
  // whose operator allows fewer, and the block never showed.
  var DEFAULT_K = 4;
  // The most a block asks for, whatever its data-k: min(20, api.max_k), served the same way.
  var MAX_K = 20;
  // The API is where the script came from, path and all: behind a proxy under /tidings/, the
  // script's origin alone asked the site's own /v1/related (a 404), and every block needed
  // data-api.
  var SCRIPT = ownScript();
  var SCRIPT_BASE = "";
  try {
    if (SCRIPT && SCRIPT.src) SCRIPT_BASE = new URL(".", new URL(SCRIPT.src, location.href)).href;
  } catch (e) { /* no usable src: containers must then set data-api */ }

  // document.currentScript is only set while this file first runs, so this runs then. A module
  // script (type="module") has none, nor has a copy some tag managers run: there the page's
  // script whose path ends in /widget.js (where the API serves it) and whose src is the file
  // this code runs from, as an Error's stack names it; no stack, or none of them that file
  // (a copy run from a string): a module one first, or the first. Another vendor's widget.js
  // on the page, before or after ours, was taken for ours, and our blocks asked its site.
  // Without this, a module tag showed nothing and said nothing.
  function ownScript() {
    if (document.currentScript) return document.currentScript;
    var running = runningFrom();
    var served = Array.prototype.filter.call(document.querySelectorAll("script[src]"), function (s) {
      try {
        return /\/widget\.js$/.test(new URL(s.src, location.href).pathname);
      } catch (e) {
        return false;
      }
    });
    return served.filter(function (s) { return running && s.src === running; })[0] ||
      served.filter(function (s) { return /^module$/i.test(s.type); })[0] || served[0] || null;
  }

  // The URL of this file, from the top frame of a stack trace: "at ownScript (URL:57:9)" in
  // Chromium, "ownScript@URL:57:9" in Firefox and Safari. null where there is none (a copy run
  // from a string, an engine that writes no stack).
  function runningFrom() {
    try {
      var frame = /(https?:\/\/\S+?):\d+:\d+\)?$/m.exec(new Error().stack);
      return frame ? new URL(frame[1]).href : null;
    } catch (e) {
      return null;
    }
  }

  var CSS = [
    // Inherited properties still cross the shadow boundary (a host's letter-spacing,
    // white-space, text-transform…): `all:initial` on the block stops them, but not
    // visibility and pointer-events, which the host may use to hide or disable the container.
    ".tdg-block{all:initial;display:block;visibility:inherit;pointer-events:inherit;",
    "--tdg-fg:#1a1a1a;--tdg-muted:#5c5f66;--tdg-line:#e3e5e8;--tdg-bg:#fff;",
    "--tdg-thumb:#eef0f3;--tdg-accent:#b3261e;--tdg-avatar:#24527a;",
    // The inline padding holds the links' focus outline (2px, 3px off: see .tdg-link): a page
    // whose container or column clips (overflow:hidden) cut it off the first and last cards,
    // and a keyboard reader saw no focus there (WCAG 2.4.7).
    "margin:2em 0;padding:0 5px .5em;color:var(--tdg-fg);background:var(--tdg-bg);",
    // medium: the reader's default size (a fixed 15px ignored it), out of the page's reach.
    "font:medium/1.4 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;text-align:start}",
    // An inferred theme (see theme()) lets the page's background show; a chosen one paints.
    ".tdg-block[data-auto]{background:transparent}",
    ".tdg-block[data-theme=dark]{--tdg-fg:#eceef1;--tdg-muted:#a3a8b1;--tdg-line:#33373d;",
    "--tdg-bg:#16181b;--tdg-thumb:#24272c;--tdg-accent:#ff8a80;--tdg-avatar:#3d6fa3}",
    ".tdg-block *{box-sizing:border-box;margin:0;padding:0}",
    // Capitals drawn by the font (small caps of every letter), the text as written: Chromium
    // gives assistive tech text-transform's capitals, and screen readers spelled "RELATED
    // STORIES" letter by letter (a hidden copy for the ear doubled the heading's textContent).
    // Small caps are drawn at .7 of the size where the font has none: 1.143em shows capitals
    // of the .8em the heading had; spacing, line height and padding keep its .8em sizes.
    ".tdg-heading{font-size:1.143em;line-height:.98;font-weight:700;letter-spacing:.056em;",
    "font-variant-caps:all-small-caps;color:var(--tdg-fg);padding-top:.42em;",
    "border-top:3px solid var(--tdg-accent);margin-bottom:.7em;",
    // A long word in data-heading (a German compound on a phone) wraps, not widens the page.
    "overflow-wrap:anywhere}",
    ".tdg-list{list-style:none;display:grid;gap:1.25em;",
    "grid-template-columns:repeat(auto-fill,minmax(190px,1fr))}",
    // Four stories too narrow for one row go 2 + 2, not auto-fill's 3 + orphan (not on phones).
    // A size container is as wide as an empty box where its width comes from its content (a
    // flex or grid sidebar of auto width, a float, an inline-block, a table cell): there the
    // block was 0 px wide, its heading a letter a line. It takes a sidebar's width there
    // (300 px, the usual ad column's); in an article column it fills the width, as before.
    // (290px: the content box, within the 5px padding each side that holds focus outlines.)
    ".tdg-block{container-type:inline-size;contain-intrinsic-inline-size:290px}",
    // The widths are the list's (the block's content box): n cards of 190 px and n - 1 gaps.
    "@media (min-width:561px){@container (calc(380px + 1.25em)<=width<calc(760px + 3.75em)){",
    ".tdg-list:has(>:nth-child(4):last-child){grid-template-columns:1fr 1fr}}",
    // Five go 3 + 2 where auto-fill gave 4 + 1 (820-1030 px), six 3 + 3 where it gave 4 + 2 or
    // 5 + 1 (820-1240 px). Under 610 px five stay 2 + 2 + 1: three cards of less than 190 px
    // cut a site name as short as "The Guardian" to "The Guardi…" beside the time.
    "@container (calc(760px + 3.75em)<=width<calc(950px + 5em)){",
    ".tdg-list:has(>:nth-child(5):last-child){grid-template-columns:1fr 1fr 1fr}}",
    "@container (calc(760px + 3.75em)<=width<calc(1140px + 6.25em)){",
    ".tdg-list:has(>:nth-child(6):last-child){grid-template-columns:1fr 1fr 1fr}}}",
    ".tdg-card,.tdg-ph{position:relative;display:flex;flex-direction:column;gap:.45em;min-width:0}",
    ".tdg-link{display:flex;flex-direction:column;gap:.55em;color:inherit;text-decoration:none}",
    ".tdg-link:focus-visible{outline:2px solid var(--tdg-accent);outline-offset:3px;border-radius:6px}",
    ".tdg-link:hover .tdg-title{text-decoration:underline;text-underline-offset:2px}",
    ".tdg-thumb{display:flex;align-items:center;justify-content:center;aspect-ratio:16/9;",
    "overflow:hidden;border-radius:6px;background:var(--tdg-thumb);color:var(--tdg-muted);",
    "font-weight:700;font-size:1.4em;letter-spacing:.05em;",
    "background-image:linear-gradient(135deg,transparent,rgba(127,127,127,.12))}",
    ".tdg-thumb img{display:block;width:100%;height:100%;object-fit:cover;border:0}",
    // Titles are shown whole (WCAG 1.4.10, reflow): cut to 3 lines and an ellipsis, a phone
    // at 320 px or a page zoomed to 200% showed "A fairly ordinary headline about the…", and
    // only a screen reader had the rest of the link's name.
    ".tdg-title{font-weight:700;font-size:1em;line-height:1.3;overflow-wrap:anywhere}",
    ".tdg-snippet{color:var(--tdg-muted);font-size:.86em;display:-webkit-box;",
    "-webkit-line-clamp:2;-webkit-box-orient:vertical;overflow:hidden;overflow-wrap:anywhere}",
    // A word wider than the row breaks inside, or it widens the card (see the grid's below).
    ".tdg-meta{font-size:.78em;color:var(--tdg-muted);margin-top:auto;min-width:0;",
    "min-height:2.1em;overflow-wrap:anywhere}",
    ".tdg-avatar{display:inline-flex;align-items:center;justify-content:center;",
    "width:2.6em;height:2.6em;border-radius:50%;background:var(--tdg-avatar);color:#fff;",
    "font-size:.7em;font-weight:700;letter-spacing:.02em}",
    // The dot between site and time, an element in its own right (see cardNode).
    ".tdg-site{font-weight:600;color:var(--tdg-fg)}.tdg-sep{margin:0 .2em}",
    ".tdg-time{white-space:nowrap}",
    // In the grid the name, the dot and the time run as text beside the avatar, wrapping
    // between words: a word breaks only where it is wider than the whole row. In a column of
    // its own beside the time, the name had some 60 px of a 190 px card: "The Guardian" took
    // three lines, "Frankfurter" broke to "Frankfurt er…". Cut with "…" a name was whole only
    // in its title's tooltip, on hover, never for keyboard and touch readers. Most names and
    // their time take two lines close set, about the avatar's height (the min-height), so the
    // card is no taller than the placeholder held (see placeholder()); names of ~30-50
    // characters take a third in the narrowest cards; a longer one ends in "…", its time too.
    "@media (min-width:561px){.tdg-meta{display:-webkit-box;-webkit-box-orient:vertical;",
    "-webkit-line-clamp:3;overflow:hidden;align-content:center;position:relative;",
    "line-height:1.15}",
    // The avatar at the start, centred on however many lines there are (1.82em: its 2.6em
    // at .7 of the meta's size; -1.3em: half its own height).
    ".tdg-meta:has(>.tdg-avatar){padding-inline-start:calc(1.82em + .45em)}",
    ".tdg-avatar{position:absolute;inset-inline-start:0;top:50%;margin-top:-1.3em}}",
    // Phones: one story a row, thumbnail beside the title, no snippet.
    "@media (max-width:560px){.tdg-list{grid-template-columns:1fr;gap:1em}",
    ".tdg-link{flex-direction:row;align-items:flex-start;gap:.8em}",
    ".tdg-thumb{flex:none;width:112px;font-size:1.1em}.tdg-snippet{display:none}",
    ".tdg-meta{padding-inline-start:calc(112px + .8em);margin-top:0}",
    // There the meta line runs as text does, wrapping between words: a site name too long
    // for the row beside the time takes another line and the time (kept whole) follows. The
    // flex row cut it to "The Ver…" at 320 px or 200% zoom (WCAG 1.4.10). The ::before strut
    // makes the first line as tall as the avatar, text centred on it.
    ".tdg-meta::before{content:'';display:inline-block;height:2.1em;vertical-align:middle}",
    ".tdg-avatar{vertical-align:middle;margin-inline-end:.3em}",
    ".tdg-card,.tdg-ph{padding-bottom:1em;border-bottom:1px solid var(--tdg-line)}}",
    ".tdg-ph :is(.tdg-title,.tdg-snippet){white-space:pre-line;background:var(--tdg-thumb);",
    "border-radius:4px}",
    ".tdg-sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);",
    "white-space:nowrap}"
  ].join("");

  // One constructable stylesheet, adopted by every block's root: unlike a <style> element it
  // is not subject to the page's Content-Security-Policy style-src, so a strict CSP (no
  // 'unsafe-inline') still gets a styled block. null where the browser cannot construct one.
  var sheet;
  function constructedSheet() {
    if (sheet === undefined) {
      try {
        sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
      } catch (e) {
        sheet = null;
      }
    }
    return sheet;
  }

  // `root` is a block's shadow root, or the document when the block had to go in the light DOM.
  function applyCss(root) {
    var adopted = "adoptedStyleSheets" in root && constructedSheet();
    if (adopted) {
      if (root.adoptedStyleSheets.indexOf(adopted) < 0) {
        root.adoptedStyleSheets = root.adoptedStyleSheets.concat([adopted]);
      }
      return;
    }
    // Browsers without constructable stylesheets: a <style> element (which a strict CSP blocks).
    var inDocument = root === document;
    if (inDocument ? document.getElementById("tdg-style") : root.querySelector("style")) return;
    var style = document.createElement("style");
    style.id = "tdg-style";
    style.textContent = CSS;
    (inDocument ? document.head || document.documentElement : root).appendChild(style);
  }

  // Shows `node` (a block, the placeholder) in place of what the container showed; null shows
  // its own children (the fallback) again, through a <slot>. In an open shadow root on the
  // container: host rules cannot reach it and its rules cannot reach the page. Not on a child
  // of ours: React found that node in its server-rendered markup and drew the whole page anew.
  // But a custom element (a "-" in its tag) attaches its own root once defined, maybe after
  // this ran (that threw): there a child of ours holds the root, and goes when the block does.
  // So does a container that cannot host a shadow root (<li>, <td>, <figure>, <ul>…: only some
  // elements may) or has one already: the block went in the light DOM there, and the page's
  // rules restyled it (a WordPress sidebar's `li` bullets, underlined pink links, hidden times,
  // squashed thumbnails). The light DOM is left for a child that takes no root either.
  function show(container, state, node) {
    if (state.seen) state.seen.disconnect();
    if (state.node && state.node.parentNode) state.node.parentNode.removeChild(state.node);
    state.node = node;
    if (!node && state.host) {
      if (state.host.parentNode) state.host.parentNode.removeChild(state.host);
      state.host = state.root = null;
    }
    if (!state.root) {
      if (!node) return; // nothing shown yet: the container stays untouched
      var host = container;
      if (container.localName.indexOf("-") > 0 || !(state.root = shadowOf(container))) {
        host = state.host = container.insertBefore(document.createElement("div"), childHolding(container, node));
        state.root = shadowOf(host) || host;
      }
      applyCss(state.root === host ? document : state.root);
    }
    if (!node && state.root !== container) node = state.node = document.createElement("slot");
    if (!node) return;
    if (node.className) theme(container, node);
    state.root.appendChild(node);
  }

  // The container's child that holds `node` (a server-rendered block), for our own child to
  // take its place: appended, it moved the block below what the page put after it (a
  // figcaption, a "Sponsored" line), which moved up over it. For a new node, the end (null),
  // but before a figure's caption written last: HTML puts a figcaption first or last in its
  // figure, under or over the content it captions. Written last, it is meant under the
  // stories ("Stories picked by Tidings"); appended, the block came below its own caption,
  // which then read as the heading of whatever the page had under the figure.
  function childHolding(container, node) {
    while (node && node.parentNode !== container) node = node.parentNode;
    var last = container.lastElementChild;
    return node || (container.localName === "figure" && last && last.localName === "figcaption" ? last : null);
  }

  // A new open shadow root on `host` (one of ours, never searched for containers), or null
  // where the element may not have one.
  function shadowOf(host) {
    try {
      var root = host.attachShadow({ mode: "open" });
      ours.add(root);
      return root;
    } catch (e) {
      return null;
    }
  }

  // Only absolute http(s) URLs reach an attribute; the URL parser strips tabs and newlines
  // the same way navigation would, so "java\tscript:" is caught too.
  function safeUrl(value) {
    if (typeof value !== "string" || !value) return null;
    try {
      var u = new URL(value);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  function text(value) {
    return value === null || value === undefined ? "" : String(value).trim();
  }

  // Same rule as api/render.py initials(): first and last name of the first author, without
  // titles ("Dr.", "The") and suffixes ("Jr.", "IV"); "Archer, L. A." is "LA". "and" is a
  // word as Python's Unicode \b sees it (JS's \b knows ASCII letters only).
  var NAME_PREFIXES = "the dr dr. prof prof. mr mr. mrs mrs. ms ms. sir dame rev rev.".split(" ");
  var NAME_SUFFIXES = "jr jr. sr sr. ii iii iv".split(" ");
  // A word counts from its first letter: '"Jane Doe"' was "D", "(AP)" and "@TechCrunch" nothing.
  function nameWords(name) {
    var words = name.split(/\s+/).map(function (w) { return w.replace(/^\P{L}+/u, ""); })
      .filter(Boolean);
    while (words.length > 1 && NAME_PREFIXES.indexOf(words[0].toLowerCase()) >= 0) words.shift();
    while (words.length > 1 && NAME_SUFFIXES.indexOf(words[words.length - 1].toLowerCase()) >= 0) words.pop();
    return words;
  }

  function initials(author) {
    var parts = text(author).replace(/^\s*by\s+/i, "")
      .split(/\s*(?:,|;|&|(?<![\p{L}\p{N}_])and(?![\p{L}\p{N}_])|\||·|•)\s*/iu);
    var words = nameWords(parts[0]);
    if (words.length === 1 && parts.length > 1 && /^(?:[A-Z]\.\s*)+$|^[A-Z]$/.test(parts[1])) {
      words = [parts[1], words[0]];
    }
    if (!words.length) return "";
    var firsts = [firstLetter(words[0]), firstLetter(words[words.length - 1])];
    // A script without case (Arabic, CJK…) has no initials: two Arabic ones joined into a word.
    if (words.length === 1 || !firsts.every(cased)) firsts = [firsts[0]];
    // One character per word even where upper-casing grows it ("ß" -> "SS").
    return firsts.map(function (c) { return Array.from(c.toUpperCase())[0]; }).join("");
  }

  // Same rule as api/render.py _first_letter(): past the Arabic article "ال" joined to the word
  // ("الجزيرة" showed "ا"), when two letters remain. Hebrew's "ה" looks like a word's own letter.
  var ARABIC_ARTICLE = /^[\u0627\u0671][\u064b-\u065f\u0670]*\u0644[\u064b-\u065f\u0670]*/;
  function firstLetter(word) {
    var rest = word.replace(ARABIC_ARTICLE, ""), letters = rest.match(/\p{L}/gu) || [];
    return /^\p{L}/u.test(rest) && letters.length >= 2 ? Array.from(rest)[0] : Array.from(word)[0];
  }

  function cased(letter) {
    return letter.toUpperCase() !== letter.toLowerCase();
  }

  // Same rule as api/render.py byline_name(): older or unnormalized rows keep the page's word
  // in the name ("By Priya Shah", "Par Priya Shah"), said once, not "Par Par Priya Shah".
  function bylineName(author, by) {
    var name = text(author).replace(/^\s*by\s+/i, ""), rest = name.slice(by.length);
    return by && name.slice(0, by.length).toLowerCase() === by.toLowerCase() && /^\s/.test(rest)
      ? rest.trim() : name;
  }

  // Same rule as api/render.py _acronym(): "BBC News" -> "BBC", "NPR"; not "DER SPIEGEL".
  function acronym(name) {
    var words = nameWords(name), first = words.length ? words[0] : "";
    if (!/^[\p{L}\p{N}]{2,4}$/u.test(first) || !inCapitals(first)) return "";
    return words.length === 1 || !words.every(inCapitals) ? first : "";
  }

  function inCapitals(word) {
    return word === word.toUpperCase() && word !== word.toLowerCase();
  }

  // Same rule as api/render.py site_mark(): "bbc.co.uk" -> "BBC", "News Example" -> "NE".
  function siteMark(site) {
    var name = text(site).toLowerCase();
    if (name && name.indexOf(" ") < 0 && name.indexOf(".") >= 0) {
      var label = name.replace(/^www\./, "").split(".")[0];
      if (/^[\p{L}\p{N}]{1,4}$/u.test(label)) return label.toUpperCase();
      return /^\p{L}/u.test(label) ? Array.from(label)[0].toUpperCase() : "";
    }
    return acronym(text(site)) || initials(site);
  }

  function snippet(summary) {
    var s = text(summary).replace(/\s+/g, " ");
    if (s.length <= 160) return s;
    var cut = s.slice(0, 160);
    var space = cut.lastIndexOf(" ");
    if (space > 80) cut = cut.slice(0, space);
    return cut.replace(/[ ,;:.-]+$/, "") + "\u2026";
  }

  // In words and in the container's language (its own or nearest lang, as the block inherits
  // it; the page's <html lang> alone made a French section's times English): "13m ago" was
  // read "13 metres ago". A lang the browser cannot take ("en_GB") falls back to the reader's.
  // In a shadow root, the host's (closest() stops at the root).
  function langOf(container) {
    var node = container, tagged;
    while (!(tagged = node.closest("[lang]")) && node.getRootNode().host) node = node.getRootNode().host;
    try {
      return Intl.getCanonicalLocales((tagged || document.documentElement).lang || [])[0];
    } catch (e) { /* the reader's locale */ }
  }

  function ago(published, lang) {
    var t = Date.parse(text(published));
    if (isNaN(t)) return "";
    var minutes = Math.max(Math.round((Date.now() - t) / 60000), 0);
    try {
      if (!known(lang)) return dateIn(t, lang);
      var say = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
      if (minutes < 1) return say.format(0, "second");
      if (minutes < 60) return say.format(-minutes, "minute");
      if (minutes < 1440) return say.format(-Math.round(minutes / 60), "hour");
      if (minutes < 10080) return say.format(-Math.round(minutes / 1440), "day");
      return dateIn(t, lang);
    } catch (e) {
      return "";
    }
  }

  // A language the browser lacks (Pashto…) got English: 2024-12-06 instead, as from the server
  // ("sv" writes ISO 8601).
  function known(lang) {
    return !lang || Intl.DateTimeFormat.supportedLocalesOf(lang).length > 0;
  }

  function dateIn(t, lang) {
    return known(lang)
      ? new Date(t).toLocaleDateString(lang, { day: "numeric", month: "short", year: "numeric" })
      : new Date(t).toLocaleDateString("sv", { year: "numeric", month: "2-digit", day: "2-digit" });
  }

  // A date takes its own direction, as titles do: a Persian one in an LTR block read day last.
  function retext(time, when) {
    time.textContent = when;
    ownDir(time);
  }

  function el(tag, cls, content) {
    var node = document.createElement(tag);
    if (cls) node.className = P + cls;
    if (content) node.textContent = content;
    return node;
  }

  // Story text may run the other way from the page: right to left where over 40% of its words
  // with a letter begin with a right-to-left one. dir="auto" (the first letter) laid Arabic
  // titles opening with a Latin name left to right, words out of order. As render.py text_dir().
  var RTL_WORD = /^\P{L}*[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\u{10800}-\u{10fff}\u{1e800}-\u{1efff}](?<=\p{L})/u;
  function ownDir(node) {
    var words = node.textContent.split(/\s+/).filter(function (w) { return /\p{L}/u.test(w); });
    var rtl = words.filter(function (w) { return RTL_WORD.test(w); }).length;
    node.setAttribute("dir", !words.length ? "auto" : 5 * rtl > 2 * words.length ? "rtl" : "ltr");
    return node;
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    if (window.crypto && crypto.getRandomValues) crypto.getRandomValues(bytes);
    else for (var i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  // A first-party, opaque, random reader id; storage may be blocked (private modes,
  // sandboxed frames), in which case the id lives only as long as the page.
  var memoryReader = null;
  function readerId() {
    try {
      var id = localStorage.getItem(READER_KEY);
      if (id && /^[0-9a-f]{32}$/.test(id)) return id;
      id = randomId();
      localStorage.setItem(READER_KEY, id);
      return id;
    } catch (e) {
      return memoryReader || (memoryReader = randomId());
    }
  }

  // Events are sent as text/plain so neither beacons nor fetch need a CORS preflight; the
  // API reads the body as JSON whatever its Content-Type.
  // No `at`: reports go at once, so the API's clock dates them. The reader's clock did, and
  // one more than 5 minutes fast (the API's limit) lost every impression and click.
  // `page`: the article the block was asked for, so the report tells which pages' blocks
  // are clicked. Left out when the API would refuse it (a server-rendered block on a page
  // that is not http(s)), which would refuse the events with it.
  function sendEvents(api, type, storyIds, preferBeacon, page) {
    if (!storyIds.length) return;
    var reader = readerId();
    page = /^https?:\/\//i.test(page) ? page : undefined;
    var body = JSON.stringify({
      events: storyIds.map(function (id) {
        return { reader: reader, story_id: id, type: type, page: page };
      })
    });
    var url = api + "/v1/events";
    try {
      if (preferBeacon && navigator.sendBeacon && navigator.sendBeacon(url, body)) return;
      fetch(url, {
        method: "POST", body: body, keepalive: true, credentials: "omit",
        headers: { "Content-Type": "text/plain;charset=UTF-8" }
      }).catch(function () {});
    } catch (e) { /* reporting is best effort */ }
  }

  // data-rel's words, others dropped (api/render.py LINK_RELS): nofollow, sponsored and ugc
  // tell search engines the page does not vouch for a link, noreferrer hides the page from it.
  var LINK_RELS = ["nofollow", "sponsored", "ugc", "noreferrer"];

  // Links to other sites: {newTab, rel}, or null (plain). A new tab gets no handle on the page.
  function otherSiteLinks(container) {
    var words = text(container.getAttribute("data-rel")).toLowerCase().split(/\s+/);
    var rel = LINK_RELS.filter(function (w) { return words.indexOf(w) >= 0; });
    var newTab = container.hasAttribute("data-new-tab");
    if (newTab) rel.unshift("noopener");
    return newTab || rel.length ? { newTab: newTab, rel: rel.join(" ") } : null;
  }

  // Same rule as aggregator/canonical.py site_key(), which the server-rendered block links by,
  // for a host as URL parses it (lower case, an IDN as punycode): no trailing dot and no
  // "www.", "m.", "mobile." or "amp.", however many (the last three where a name with a dot is
  // left: mobile.de is a site). One "www." off left www.www.x a site apart from www.x, and on
  // m.x the desktop site's stories opened in a new tab as another site's.
  function siteKey(host) {
    return host.replace(/\.+$/, "").replace(/^(?:www\.|(?:m|mobile|amp)\.(?=[^.]*\.))+/, "");
  }

  // The page's own site: that of the address its block is for (pageUrl), as /v1/widget judges
  // by its url. By location's host, a block the widget drew in place of a server-rendered one
  // (data-personal, a redraw) linked the article's own site's stories in a new tab, nofollow,
  // where the server's had them plain (a page on m. or a preview host, canonical on www.).
  function ownSite(page) {
    try {
      return siteKey(new URL(page).hostname || location.hostname);
    } catch (e) {
      return siteKey(location.hostname);
    }
  }

  // A thumbnail whose image fails shows the site's mark, as one without an image does. An image
  // of a server-rendered block may have failed before this script ran: no error event comes.
  function markThumb(thumb, site) {
    thumb.className = P + "thumb " + P + "thumb-empty";
    thumb.setAttribute("aria-hidden", "true");
    thumb.textContent = siteMark(site);
  }
  function watchImage(img, site) {
    var thumb = img.parentNode, fail = function () { markThumb(thumb, site); };
    img.addEventListener("error", fail);
    if (img.complete && !img.naturalWidth && img.getAttribute("src")) fail();
  }

  function cardNode(card, links, own, lang, words) {
    var li = el("li", "card");
    var id = text(card.id);
    if (id) li.setAttribute("data-story-id", id);
    var href = safeUrl(card.url);
    var link = el(href ? "a" : "span", "link");
    if (href) link.setAttribute("href", href);
    // The page's own site's stories ("www." or not) stay plain links: same tab, followed.
    var other = href && links && siteKey(new URL(href).hostname) !== own;
    if (other) {
      if (links.newTab) link.setAttribute("target", "_blank");
      if (links.rel) link.setAttribute("rel", links.rel);
    }

    var site = text(card.site) || text(card.source);
    var thumb = el("span", "thumb");
    var src = safeUrl(card.image_url);
    if (src) {
      var img = document.createElement("img");
      img.setAttribute("alt", "");
      img.setAttribute("loading", "lazy");
      img.setAttribute("decoding", "async");
      // Hotlinked: the page's URL is no business of the image host, and hotlink blocking
      // lets an empty Referer through.
      img.setAttribute("referrerpolicy", "no-referrer");
      thumb.appendChild(img);
      watchImage(img, site);
      img.setAttribute("src", src);
    } else {
      markThumb(thumb, site);
    }
    link.appendChild(thumb);
    link.appendChild(ownDir(say(el("span", "title"), text(card.title), words, "untitled")));
    // A new tab is said, not only shown by the browser: a screen reader user was taken away
    // from the article without a word (WCAG G201).
    if (other && links.newTab) link.appendChild(say(el("span", "sr"), "", words, "new-tab-label"));
    li.appendChild(link);

    var summary = snippet(card.summary);
    if (summary) li.appendChild(ownDir(el("p", "snippet", summary)));

    var meta = el("p", "meta");
    // Spaces between the parts, as the server writes them (the meta row wraps at them): the
    // text read "By Jane DoeBBC".
    function add(node) {
      if (meta.childNodes.length) meta.appendChild(document.createTextNode(" "));
      meta.appendChild(node);
    }
    var author = bylineName(card.author, words.by), letters = initials(author);
    if (author) {
      // No letters to show ("123"): no avatar, an empty circle looked broken. Still said.
      if (letters) {
        var avatar = el("span", "avatar", letters);
        avatar.setAttribute("aria-hidden", "true");
        add(avatar);
      }
      add(el("span", "sr", words.by + " " + author));
    }
    if (site) {
      var name = ownDir(el("span", "site", site));
      name.title = site;
      add(name);
    }
    var when = ago(card.published_at, lang);
    if (when) {
      var time = ownDir(el("time", "time", when));
      // HTML allows 3 digits of a second; the API sends 6.
      time.setAttribute("datetime", new Date(Date.parse(text(card.published_at))).toISOString());
      if (site) add(separator());
      add(time);
    }
    if (meta.childNodes.length) li.appendChild(meta);
    return li;
  }

  // The dot between a site and a time: an element of its own, in the block's direction, between
  // the two (each isolated by its dir). Drawn at the start of the time, an English time on a
  // right-to-left page had it on its far side: "· 5 minutes ago" left of "BBC". Not read aloud.
  // api/render.py writes the same.
  function separator() {
    var dot = el("span", "sep", "\u00b7");
    dot.setAttribute("aria-hidden", "true");
    return dot;
  }

  // data-theme, else the page's (not the OS's: dark blocks in white articles): a dark colour
  // behind the container (the nearest opaque background, up to the page's) means a dark page;
  // where the page paints none, light text inherited does. By the text alone, a dark page
  // whose text is coloured by its own rules (p, h1… { color }) passed black on to the
  // container, and the block's near-black text sat on the page's dark background (1.1:1).
  function theme(container, block) {
    var chosen = container.getAttribute("data-theme");
    if (chosen !== "dark" && chosen !== "light") {
      chosen = "light";
      try {
        // Painted, not parsed: it may be oklch() or color().
        var pen = document.createElement("canvas").getContext("2d");
        var behind = backgroundOf(container, pen);
        if (behind ? lightness(behind) < 128 : lightness(painted(pen, getComputedStyle(container).color)) > 128) {
          chosen = "dark";
        }
      } catch (e) { /* no canvas: light */ }
      block.setAttribute("data-auto", "");
    }
    block.setAttribute("data-theme", chosen);
  }

  // The colour behind the container, as [r, g, b, a]: the first opaque background of it or an
  // ancestor (across shadow roots) with the translucent ones above it laid over it, as the
  // browser paints them. The first opaque one alone took a dark box of rgba(0,0,0,.85) on a
  // white page for white, and the block's near-black text sat on near-black. null where all
  // are see-through (the canvas shows: white, or dark where the page asks color-scheme: dark,
  // whose text is then light). Translucent ones over the canvas are laid over it too: most
  // pages paint no background, and a dark box on one was read as no background at all.
  function backgroundOf(container, pen) {
    var above = [], seen = false;
    for (var node = container; node; node = node.parentElement || node.getRootNode().host) {
      var color = getComputedStyle(node).backgroundColor, alpha = painted(pen, color)[3];
      if (alpha < 255) {
        above.unshift(color);
        seen = seen || alpha > 0;
        continue;
      }
      return over(pen, color, above);
    }
    if (!seen) return null;
    // The canvas: white, or dark where the page asks color-scheme: dark (its text then light).
    var dark = lightness(painted(pen, getComputedStyle(document.documentElement).color)) > 128;
    return over(pen, dark ? "#121212" : "#fff", above);
  }

  // `layers` (bottom first) painted over the opaque `base`, as [r, g, b, a].
  function over(pen, base, layers) {
    painted(pen, base);
    layers.forEach(function (layer) {
      pen.fillStyle = layer;
      pen.fillRect(0, 0, 1, 1);
    });
    return pen.getImageData(0, 0, 1, 1).data;
  }

  function painted(pen, color) {
    pen.clearRect(0, 0, 1, 1); // a see-through fill leaves the last colour showing
    pen.fillStyle = color;
    pen.fillRect(0, 0, 1, 1);
    return pen.getImageData(0, 0, 1, 1).data;
  }

  function lightness(rgb) {
    return rgb[0] * .3 + rgb[1] * .59 + rgb[2] * .11;
  }

  // The block's own words, each the container's to give in its page's language (data-heading,
  // data-untitled, data-by, data-new-tab-label; blank: these). Fixed, a French or German page
  // could change the heading only, and its readers got English. /v1/widget takes the same.
  var WORDS = { heading: "Related stories", untitled: "Untitled", by: "By",
    "new-tab-label": "opens in a new tab" };
  function wordsOf(container) {
    var words = {};
    for (var name in WORDS) words[name] = text(container.getAttribute("data-" + name)) || WORDS[name];
    return words;
  }

  // `node` saying `value`, else the word `name`; a default word is English on any page:
  // lang="en" has a screen reader say it in English.
  function say(node, value, words, name) {
    node.textContent = value || words[name];
    if (!value && words[name] === WORDS[name]) node.lang = "en";
    return node;
  }

  // data-heading-level 2 to 6, else 2: an h2 was wrong under an article whose sections are h2s.
  // One digit, as api/render.py heading_level_of() reads /v1/widget's heading_level= (not "03").
  function headingLevel(container) {
    var level = text(container.getAttribute("data-heading-level"));
    return /^[2-6]$/.test(level) ? level : "2";
  }

  // The heading's words as written, one text node: the CSS draws them in capitals (small caps,
  // not text-transform, which Chromium hands to screen readers). A server block's heading is
  // the same and needs nothing when it is taken in.
  function heading(h, words) {
    if (words.heading === WORDS.heading) h.lang = "en";
    h.textContent = words.heading;
    return h;
  }

  // Named by its heading (aria-labelledby), not by a copy of its text in aria-label, which page
  // translators leave as it was. Unique ids: a block in the light DOM shares the page's.
  var headings = 0;
  function blockNode(cards, words, links, own, lang, level) {
    var section = el("section", "block"), h = heading(el("h" + level, "heading"), words);
    h.id = P + "h" + ++headings;
    section.setAttribute("aria-labelledby", h.id);
    section.appendChild(h);
    var list = el("ul", "list");
    cards.forEach(function (card) { list.appendChild(cardNode(card, links, own, lang, words)); });
    section.appendChild(list);
    keepLang(section, lang);
    return section;
  }

  // all:initial resets the language text is drawn in: a Turkish heading read "ILGILI", not
  // "İLGİLİ". The children's lang gives the container's back (not to a default English word).
  function keepLang(block, lang) {
    if (lang) Array.prototype.forEach.call(block.children, function (child) {
      if (!child.lang) child.lang = lang;
    });
  }

  // IntersectionObserver only calls back when the visible fraction of the block crosses a
  // threshold; steps of 1% let seenEnough() notice a tall block filling half the viewport.
  var STEPS = [];
  for (var step = 0; step <= 100; step++) STEPS.push(step / 100);

  // Seen: at least half the block is on screen, or it covers at least half the viewport's
  // height (a block taller than two viewports can never be half on screen). rootBounds is null
  // in a cross-origin frame, where only the first rule can apply.
  function seenEnough(entry) {
    if (!entry.isIntersecting) return false;
    if (entry.intersectionRatio >= 0.5) return true;
    var viewport = entry.rootBounds;
    return !!viewport && viewport.height > 0 && entry.intersectionRect.height >= viewport.height / 2;
  }

  // Each story is one impression a page view (location.href: an app's pushState starts a new
  // one), however many containers show it: two for one article counted it twice. Not its
  // #fragment: an in-page anchor is the same view, and a redraw after one counted again.
  var reported = Object.create(null);
  function firstSeen(api, ids) {
    return ids.filter(function (id) {
      var key = location.href.split("#")[0] + " " + api + " " + id;
      return reported[key] ? false : (reported[key] = true);
    });
  }

  // Impressions when seenEnough() (firstSeen()), clicks on every link. Works the same on blocks built here and on server-rendered /v1/widget HTML.
  function track(block, api, page, state) {
    var ids = Array.prototype.map.call(block.querySelectorAll("[data-story-id]"), function (li) {
      return li.getAttribute("data-story-id");
    });
    function onClick(event) {
      // auxclick is any other button: the middle one opens the story, the right one a menu.
      if (event.type === "auxclick" && event.button !== 1) return;
      var link = event.target.closest && event.target.closest("a." + P + "link");
      var li = link && link.closest("[data-story-id]");
      if (!li || !block.contains(li)) return;
      sendEvents(api, "click", [li.getAttribute("data-story-id")], true, page);
      forgetPersonal();
    }
    block.addEventListener("click", onClick);
    block.addEventListener("auxclick", onClick);
    if (!("IntersectionObserver" in window)) return sendEvents(api, "impression", firstSeen(api, ids), false, page);
    var seen = state.seen = new IntersectionObserver(function (entries) {
      if (entries.some(seenEnough)) {
        seen.disconnect();
        sendEvents(api, "impression", firstSeen(api, ids), false, page);
      }
    }, { threshold: STEPS });
    seen.observe(block);
  }

  // A relative data-url is read as a link would be: the API takes absolute URLs only. A
  // blank one is unset: read as a link it was the page's address, private query and all.
  function pageUrl(container) {
    var canonical = document.querySelector("link[rel=canonical][href]");
    var given = text(container.getAttribute("data-url"));
    try {
      if (given) return articleOf(new URL(given, document.baseURI).href);
    } catch (e) { /* the API will refuse it */ }
    return given || (canonical && articleOf(canonical.href)) || ownAddress();
  }

  // A fragment ("#comments") never reaches a server and names the same article: sent, the API
  // answered the same block under another request, which neither this script's answers nor
  // the browser's cache or the API's (by the URL as given, its ETag too) knew as the same.
  // A hashbang ("#!/story/1") is an app's route and names the story: kept, as the API's
  // canonical form keeps it (aggregator/canonical.py).
  function articleOf(href) {
    try {
      var url = new URL(href);
      if (!/^#!./.test(url.hash)) url.hash = "";
      return url.href;
    } catch (e) {
      return href;
    }
  }

  // Without data-url or a canonical link the page's own address is all there is, and its
  // query may hold what is the reader's alone (a login or reset token, a session id): sent,
  // the API logged it and fetched the page with it. Such parameters stay here, and the
  // fragment but a hashbang route (as articleOf keeps it), whose own query is read alike.
  var PRIVATE_PARAM = /(?:token|secret|passw(?:or)?d|^pwd$|^auth(?:_.*|orization)?$|^code$|^state$|session|sessid|^sid$|^(?:api_?)?key$|^sig(?:nature)?$|^otp$|^ticket$|^jwt$)/i;
  function ownAddress() {
    try {
      var url = new URL(location.href), route = /^#!([^?]*)(\?.*)?$/.exec(url.hash);
      url.search = publicQuery(url.search);
      url.hash = route && (route[1] || route[2]) ? "#!" + route[1] + publicQuery(route[2]) : "";
      return articleOf(url.href);
    } catch (e) {
      return location.href.split("#")[0];
    }
  }

  // "?a=1&token=x" is "?a=1": the query less the parameters named like a secret, the rest as
  // written. Rebuilt by URLSearchParams it read as a form ("/" as %2F, "print" as "print="),
  // which a hashbang route's query, kept as it is by the API's canonical form, is not.
  function publicQuery(search) {
    var kept = (search || "").replace(/^\?/, "").split("&").filter(function (pair) {
      var name = pair.split("=")[0];
      try {
        name = decodeURIComponent(name.replace(/\+/g, " "));
      } catch (e) {}  // a stray "%": the name as written
      return pair && !PRIVATE_PARAM.test(name);
    });
    return kept.length ? "?" + kept.join("&") : "";
  }

  // data-api is read as a link too: "//tidings.example" or "/tidings" (a proxy on the page's
  // own origin) were dropped for not being absolute, and the block asked the script's origin.
  function apiBase(container) {
    var given = text(container.getAttribute("data-api")), configured = null;
    try {
      if (given) configured = safeUrl(new URL(given, document.baseURI).href);
    } catch (e) { /* not a URL: where the script came from */ }
    return (configured || SCRIPT_BASE).replace(/\/+$/, "");
  }

  // A whole number in digits, as the API reads k; anything else is unset (parseInt read
  // "1e3" as 1 and "2.5" as 2). Past what the API gives, it is the most it gives: a larger
  // one was a 422, and no block.
  function count(container) {
    var k = text(container.getAttribute("data-k"));
    return /^\d+$/.test(k) ? Math.min(Math.max(+k, 1), MAX_K) : DEFAULT_K;
  }

  // The API's related filters, each from its attribute (exclude_site from data-exclude-site).
  var FILTERS = ["category", "site", "exclude_site", "max_age_days"];
  function attrOf(filter) {
    return "data-" + filter.replace(/_/g, "-");
  }


  // The request for the block of `page` (pageUrl) in a container; "" without an API to ask.
  // A blank filter is left out: the API refuses an empty max_age_days. data-personal adds the
  // reader the events name (its answer is theirs alone: private, never in a shared cache);
  // `shared`: the block as everyone gets it, which is what a server-rendered one is.
  function requestOf(container, page, shared) {
    var api = apiBase(container);
    if (!api) return "";
    var url = api + "/v1/related?url=" + encodeURIComponent(page) + "&k=" + count(container);
    FILTERS.forEach(function (filter) {
      var value = text(container.getAttribute(attrOf(filter)));
      if (value) url += "&" + filter + "=" + encodeURIComponent(value);
    });
    if (!shared && container.hasAttribute("data-personal")) url += "&reader=" + readerId();
    return url;
  }

  // Promises of cards by request: two containers for one article, or an app going back to
  // one, make one request. A failure is forgotten (a refresh asks again), and all past 100,
  // so a long-lived app neither grows this for ever nor shows day-old blocks.
  var answers = Object.create(null), asked = 0;
  function related(url) {
    if (answers[url]) return answers[url];
    if (++asked > 100) {
      answers = Object.create(null);
      asked = 1;
    }
    var abort = window.AbortController ? new AbortController() : null;
    var timer = abort && setTimeout(function () { abort.abort(); }, FETCH_TIMEOUT_MS);
    var answer = answers[url] = fetch(url, { credentials: "omit", signal: abort && abort.signal })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (block) {
        return block && Array.isArray(block.related)
          ? block.related.filter(function (c) { return c && typeof c === "object"; }) : [];
      });
    answer.then(function () { clearTimeout(timer); }, function () {
      clearTimeout(timer);
      if (answers[url] === answer) delete answers[url];
    });
    return answer;
  }

  // A click changes what a personal block holds (the API leaves out what the reader read):
  // kept, an app going back to the article showed the story just clicked.
  function forgetPersonal() {
    Object.keys(answers).forEach(function (url) {
      if (url.indexOf("&reader=") >= 0) delete answers[url];
    });
  }

  // Holds the block's room while it loads, or its arrival pushes the page down (CLS). The
  // block's own classes, so its CSS sizes it alike: k cards with 3 lines of title (titles are
  // never cut: a longer one grows its card), 2 of snippet and meta, so the block is seldom
  // taller. Grey boxes, hidden from assistive technology; no .tdg-card: it is not a block.
  function placeholder(container) {
    var node = blockNode([], wordsOf(container), null, "", langOf(container), headingLevel(container));
    node.removeAttribute("aria-labelledby");
    node.setAttribute("aria-hidden", "true");
    for (var i = count(container); i > 0; i--) {
      var card = el("li", "ph"), link = el("span", "link");
      link.appendChild(el("span", "thumb"));
      link.appendChild(el("span", "title", "\u00a0\n\u00a0\n\u00a0"));
      card.appendChild(link);
      card.appendChild(el("p", "snippet", "\u00a0\n\u00a0"));
      card.appendChild(el("p", "meta", "\u00a0"));
      node.lastChild.appendChild(card);
    }
    return node;
  }

  // The page's own content in the container (its fallback) takes room already: no placeholder.
  function hasOwnContent(container, state) {
    return Array.prototype.some.call(container.childNodes, function (n) {
      return n !== state.node && n !== state.host && (n.nodeType === 1 || (n.nodeType === 3 && /\S/.test(n.nodeValue)));
    });
  }

  function render(container, state, cards, api, page) {
    if (!cards.length) return show(container, state, null);
    var node = blockNode(cards, wordsOf(container), otherSiteLinks(container), ownSite(page),
      langOf(container), headingLevel(container));
    // Shorter than the placeholder, it keeps its room (or the page under it moves up) unless
    // the container is below the viewport, where that moves nothing the reader sees. The
    // room in the block's own CSS pixels (its computed height: both have the same padding):
    // the box on screen is zoomed or scaled with the page (`zoom`, `transform: scale`), and
    // at zoom 1.5 the block kept 1.5 times its room, an empty gap that moved the page under it.
    var held = state.node && state.node.hasAttribute("aria-hidden") &&
      container.getBoundingClientRect().top < window.innerHeight
      ? getComputedStyle(state.node).height : "";
    show(container, state, node);
    if (held) node.style.minHeight = held;
    track(node, api, page, state);
    built.add(node);
    keepTime();
  }

  // "5 minutes ago" on a page left open grows old: one timer for every block built here (the
  // server's say dates), once a minute while the page is visible, nothing asked again.
  var clock = null;
  function keepTime() {
    clearInterval(clock);
    clock = !document.hidden && retime() ? setInterval(function () { if (!retime()) keepTime(); }, 60000) : null;
  }

  // Writes each shown time anew (where it changed); false when no block shows one.
  function retime() {
    var shown = false;
    try {
      drawn.forEach(function (container) {
        var node = states.get(container).node, lang = langOf(container);
        if (!built.has(node) || !container.isConnected) return;
        Array.prototype.forEach.call(node.querySelectorAll("time"), function (time) {
          var when = ago(time.getAttribute("datetime"), lang);
          if (when && when !== time.textContent) retext(time, when);
          shown = true;
        });
      });
    } catch (e) { /* never break the host page */ }
    return shown;
  }

  // Lazy: ask the API only when the container comes within a screen or so of the viewport.
  function whenNear(container, state, then) {
    if (!("IntersectionObserver" in window)) return then();
    var near = state.near = new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; })) {
        near.disconnect();
        then();
      }
    }, { rootMargin: "600px 0px" });
    near.observe(container);
  }

  // What drawing a block takes from its container besides the request. Changed alone, the
  // block shown is drawn again from the same answer: it kept its old links, heading and theme.
  function lookOf(container) {
    return JSON.stringify([otherSiteLinks(container), wordsOf(container),
      container.getAttribute("data-theme"), headingLevel(container)]);
  }

  // A block is shown (ours or the server's): not the placeholder, the fallback or nothing.
  function showsBlock(state) {
    var node = state.node;
    return !!node && node.classList.contains(P + "block") && !node.hasAttribute("aria-hidden");
  }

  // Shows the block for the container's current request: at start, and when the page may
  // have changed it (data-url, a filter, refresh()). An unchanged request does nothing but
  // redraw a block shown whose look changed (one on its way is drawn as its container then
  // says). `keep`: what is shown is the same article's block (server-rendered, or ours being
  // redrawn), so it stays until the answer replaces it, and for good if there is none.
  function want(container, state, keep) {
    var page = pageUrl(container), url = requestOf(container, page), api = apiBase(container);
    if (!api) noApi(container);
    var look = lookOf(container), redraw = url === state.url;
    if (redraw && (look === state.look || !showsBlock(state))) {
      state.look = look;
      return;
    }
    keep = keep || redraw;
    state.look = look;
    var gen = ++state.gen;
    state.url = url;
    if (state.near) state.near.disconnect();
    if (!keep) {
      show(container, state, url && !hasOwnContent(container, state) ? placeholder(container) : null);
    }
    if (url) whenNear(container, state, function () {
      related(url).then(function (cards) {
        if (gen === state.gen) render(container, state, cards, api, page);
      }, function () {
        // API down or odd answer: the placeholder goes, the container shows what it held
        // (usually nothing). The page under it moves up once, but an empty grey box left in
        // the article for good would be worse for it than that one shift.
        if (gen === state.gen && !keep) show(container, state, null);
      });
    });
  }

  // A container with no API to ask shows nothing: said once a page, in the console, with
  // what to do. It was silent, and a publisher saw an empty container and no reason.
  var warned = false;
  function noApi(container) {
    if (warned || !window.console || !console.warn) return;
    warned = true;
    console.warn("Tidings widget: no API to ask for this container's related stories, as the " +
      "script cannot tell where it came from (no <script src> whose path ends in /widget.js). " +
      "Load it with <script src=\"https://YOUR-TIDINGS-API/widget.js\"> (type=\"module\" " +
      "is fine), or give the container data-api=\"https://YOUR-TIDINGS-API\".", container);
  }

  // Per container: root, node (what show() put there), url (its request), gen (an answer to
  // an older request is dropped: never two blocks or an old one), near and seen observers.
  var states = typeof WeakMap === "function" ? new WeakMap() : null;
  // The shadow roots that hold our blocks: no container is in them, and they need no watching.
  var ours = states && new WeakSet();
  // The containers started, for retheme(); one the page removed goes then (start() adds it
  // again if the page puts it back).
  var drawn = states && new Set();
  // The blocks built here (not server-rendered), whose times are relative.
  var built = states && new WeakSet();

  // The page switched to or from dark after its blocks were drawn (a toggle writing a class or
  // attribute on <html> or <body>, the OS setting the page's CSS follows, a colour transition
  // ending): an inferred theme is read again. Read once, a page gone dark kept the block's
  // dark text on its now dark background.
  function retheme() {
    try {
      drawn.forEach(function (container) {
        var node = states.get(container).node;
        if (!container.isConnected) drawn.delete(container);
        else if (node && node.className) theme(container, node);
      });
    } catch (e) { /* never break the host page */ }
  }

  function start(container) {
    if (!states) return;
    drawn.add(container);
    var state = states.get(container);
    // Known (re-inserted, data-url set, refresh()): only a changed request reloads.
    if (state) return want(container, state);
    states.set(container, state = { gen: 0 });
    // A server-rendered block (/v1/widget) moves into the shadow root like one built here.
    var prerendered = container.querySelector("." + P + "block");
    if (!prerendered) return want(container, state);
    show(container, state, prerendered);
    Array.prototype.forEach.call(prerendered.querySelectorAll("." + P + "card"), function (card) {
      var img = card.querySelector("img"), site = card.querySelector("." + P + "site");
      if (img) watchImage(img, site ? site.textContent : "");
    });
    // The server writes its dates in English ("5 Dec 2026") unless asked with lang=: a French
    // page read "Dec".
    var lang = langOf(container);
    keepLang(prerendered, lang);
    if (lang && !/^en\b/i.test(lang)) {
      Array.prototype.forEach.call(prerendered.querySelectorAll("time[datetime]"), function (time) {
        var t = Date.parse(time.getAttribute("datetime"));
        try {
          if (!isNaN(t)) retext(time, dateIn(t, lang));
        } catch (e) { /* the server's date stays */ }
      });
    }
    var page = pageUrl(container), api = apiBase(container);
    state.url = requestOf(container, page, true);
    state.look = lookOf(container);
    if (api) track(prerendered, api, page, state);
    // Cached for everyone, it cannot be the reader's: with data-personal theirs replaces it.
    want(container, state, true);
  }

  // Containers in the page's open shadow roots (web components, declarative shadow DOM) too:
  // querySelectorAll stops at a shadow root, and they were never found. Each root found is
  // watched as the document is. A closed root cannot be seen, nor one attached after the last
  // look (its component calls TidingsWidget.scan() once it has rendered).
  function startAll(root) {
    Array.prototype.forEach.call(root.querySelectorAll("[data-tidings-related]"), start);
    Array.prototype.forEach.call(root.querySelectorAll("*"), enter);
  }

  function enter(node) {
    var inner = node.shadowRoot;
    if (!inner || !ours || ours.has(inner)) return;
    if (watcher) watcher.observe(inner, WATCHED);
    startAll(inner);
  }

  function scan() {
    try {
      startAll(document);
    } catch (e) { /* never break the host page */ }
  }

  // Containers a page adds later (infinite scroll, client-side rendering) start by themselves,
  // and one given another data-url (an app changing the article in place) gets its block.
  // Only those elements are looked at, never the whole document again; a canonical link
  // added, removed or changed (an app's new article, after or without pushState) re-reads all.
  var watcher = null, WATCHED = {
    childList: true, subtree: true, attributes: true,
    attributeFilter: ["data-tidings-related", "data-url", "data-k", "data-api", "data-personal",
      "data-new-tab", "data-rel", "data-theme", "data-heading-level", "href"]
      .concat(FILTERS.map(attrOf), Object.keys(WORDS).map(function (w) { return "data-" + w; }))
  };
  function watch() {
    if (!window.MutationObserver) return;
    watcher = new MutationObserver(function (records) {
      var canonical = false;
      function look(node) {
        canonical = canonical || (node.nodeType === 1 && node.matches("link[rel=canonical]"));
      }
      try {
        records.forEach(function (record) {
          if (record.type === "attributes") {
            look(record.target);
            if (record.target.hasAttribute("data-tidings-related")) start(record.target);
            return;
          }
          Array.prototype.forEach.call(record.removedNodes, look);
          Array.prototype.forEach.call(record.addedNodes, function (node) {
            look(node);
            if (node.nodeType !== 1) return;
            if (node.hasAttribute("data-tidings-related")) start(node);
            enter(node);
            if (node.firstElementChild) startAll(node);
          });
        });
        if (canonical) scan();
      } catch (e) { /* never break the host page */ }
    });
    watcher.observe(document, WATCHED);
  }

  // Started once the document is parsed, so a container is never seen half-parsed (a
  // server-rendered block inside it not there yet). An app moving to another article with
  // pushState alone, or back, changes the page's address (the article of a container without
  // data-url or canonical link): the Navigation API's navigatesuccess tells of both, popstate
  // of back and forward where the API is missing (or window.navigation is the page's element
  // of that id; a second re-read asks nothing). history.pushState is the page's: not wrapped.
  function init() {
    watch();
    scan();
    var nav = window.navigation;
    if (nav && nav.addEventListener) nav.addEventListener("navigatesuccess", scan);
    addEventListener("popstate", scan);
    if (drawn) document.addEventListener("visibilitychange", keepTime);
    if (!drawn || !window.MutationObserver) return;
    var toggles = new MutationObserver(retheme);
    [document.documentElement, document.body].forEach(function (node) {
      if (node) toggles.observe(node, { attributes: true });
    });
    // A dark mode that is another stylesheet: a <link> or <style> in the head added, removed
    // or changed (href, media, disabled), and a stylesheet's load (a new href is not in force
    // until then). Only the page's transitions told of it, and most swaps have none.
    if (document.head) {
      toggles.observe(document.head, { attributes: true, childList: true, subtree: true, characterData: true });
    }
    document.addEventListener("load", function (event) {
      if (event.target.localName === "link") retheme();
    }, true);
    var dark = window.matchMedia && matchMedia("(prefers-color-scheme: dark)");
    if (dark && dark.addEventListener) dark.addEventListener("change", retheme);
    document.addEventListener("transitionend", function (event) {
      if (event.propertyName === "color" || event.propertyName === "background-color") retheme();
    }, true);
  }

  // refresh(), for what the widget cannot see (pushState without the Navigation API): scan()
  // re-reads every container, and only a changed request asks anything.
  window.TidingsWidget = { scan: scan, refresh: scan };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
