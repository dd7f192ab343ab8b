/* charrnn viz: the page's behaviour. It reads the JSON in #viz-meta and the arrays packed by
   pack.py in #viz-blob, then draws the text coloured by one unit, the pickers and legend, the
   hover box of the model's guesses, the ranked units and the gate-saturation plots. With live
   weights it also runs the model forward itself (net.js) to write text in the page (live.js).
   window.charrnnViz is the page's scripting hook (the tests drive the page through it). */
"use strict";
(function () {
  const meta = JSON.parse(document.getElementById("viz-meta").textContent);
  const $ = (id) => document.getElementById(id);
  const text = Array.from(meta.text);  // by code point, as Python indexes the text
  const vocab = Array.from(meta.vocab);
  const vocabIndex = new Map(vocab.map((ch, i) => [ch, i]));
  const L = text.length, H = meta.hidden, TOP = 5;
  const stateNames = meta.states.map((s) => s[0]);
  const stateInfo = new Map(meta.states.map(([name, lo, hi, label]) => [name, {lo, hi, label}]));
  const sel = {layer: 0, state: "h", unit: 0, byLoss: false};
  let data = null;  // the unpacked ArrayBuffer
  const spans = [];

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("data-")) e.dataset[k.slice(5)] = v;
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("data-")) e.dataset[k.slice(5)] = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  // a character as a reader can see it: newline, space, tab and control characters by name
  function shown(ch) {
    if (ch === "\n") return "\\n";
    if (ch === " ") return "\u2423";
    if (ch === "\t") return "\\t";
    const code = ch.codePointAt(0);
    return code < 32 || code === 127 ? "U+" + code.toString(16).toUpperCase().padStart(4, "0") : ch;
  }

  async function unpack() {
    const bin = atob($("viz-blob").textContent.trim());
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer();
  }

  function view(name) {
    const [type, offset, length] = meta.index[name];
    return new globalThis[type](data, offset, length);
  }

  // ---- colours -------------------------------------------------------------------------------

  function colour(scale, v) {
    const stops = meta.scales[scale];
    if (!(v > stops[0][0])) return stops[0][1];
    for (let k = 1; k < stops.length; k++) {
      const [x1, c1] = stops[k];
      if (v <= x1) {
        const [x0, c0] = stops[k - 1], t = (v - x0) / (x1 - x0);
        return c0.map((a, j) => Math.round(a + t * (c1[j] - a)));
      }
    }
    return stops[stops.length - 1][1];
  }
  const rgb = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  const scaleOf = (state) => (stateInfo.get(state).lo === 0 ? "gate" : "diverging");

  // the chosen unit's values over the text, from its quantised codes (L,)
  function values(layer, state, unit) {
    const lo = stateInfo.get(state).lo, step = meta.step_size;
    const codes = view(`a${layer}.${state}`).subarray(unit * L, (unit + 1) * L);
    return Array.from(codes, (q) => lo + q * step);
  }

  // ---- the text ------------------------------------------------------------------------------

  function drawText() {
    const box = $("text"), frag = document.createDocumentFragment();
    text.forEach((ch, t) => {
      const s = el("span", {"data-t": t});
      if (ch === "\n") {
        s.className = "nl";
        s.textContent = "\u21b5\n";
      } else {
        s.textContent = shown(ch) === ch || ch === " " ? ch : shown(ch);
      }
      spans.push(s);
      frag.append(s);
    });
    box.append(frag);
  }

  function recolour() {
    if (sel.byLoss) {
      const lossBits = view("loss_bits");
      spans.forEach((s, t) => {
        s.style.backgroundColor = t === 0 ? "" : rgb(colour("loss", lossBits[t - 1]));
      });
    } else {
      const v = values(sel.layer, sel.state, sel.unit), scale = scaleOf(sel.state);
      spans.forEach((s, t) => { s.style.backgroundColor = rgb(colour(scale, v[t])); });
    }
    drawLegend();
    recolourLive();
    document.querySelectorAll("#saturation circle").forEach((c) => {
      c.classList.toggle("on", +c.dataset.layer === sel.layer && +c.dataset.unit === sel.unit);
    });
  }

  function drawLegend() {
    const scale = sel.byLoss ? "loss" : scaleOf(sel.state);
    const stops = meta.scales[scale], lo = stops[0][0], hi = stops[stops.length - 1][0];
    const css = stops.map(([x, c]) => `${rgb(c)} ${(100 * (x - lo)) / (hi - lo)}%`).join(", ");
    $("legend-bar").style.background = `linear-gradient(to right, ${css})`;
    $("legend-lo").textContent = String(lo);
    $("legend-hi").textContent = sel.byLoss ? `${hi}+` : String(hi);
    $("legend-what").textContent = sel.byLoss
      ? "bits of surprise at each character"
      : `layer ${sel.layer}, ${stateInfo.get(sel.state).label}, unit ${sel.unit}`;
  }

  // ---- what the model expected ---------------------------------------------------------------

  let pinned = null;

  function showBox(t) {
    const box = $("box"), ids = view("top_ids"), ps = view("top_p");
    const v = values(sel.layer, sel.state, sel.unit)[t];
    box.replaceChildren(
      el("div", {class: "head"}, "after ", el("code", {}, shown(text[t])),
         ` (character ${t}): ${sel.state}, layer ${sel.layer}, unit ${sel.unit} \u2248 ${v.toFixed(2)}`),
      el("div", {}, "the model's guesses for the next character:"));
    const table = el("table", {});
    for (let k = 0; k < TOP; k++) {
      const ch = vocab[ids[t * TOP + k]], p = ps[t * TOP + k] / 65535;
      table.append(el("tr", {class: "guess", "data-char": ch, "data-p": p.toFixed(5)},
                      el("td", {}, el("code", {}, shown(ch))),
                      el("td", {}, `${(100 * p).toFixed(1)}%`)));
    }
    box.append(table);
    if (t + 1 < L) {
      const b = view("loss_bits")[t], next = text[t + 1];
      box.append(el("div", {class: "actual", "data-char": next, "data-p": (2 ** -b).toFixed(5),
                            "data-bits": b.toFixed(4)},
                    "what came: ", el("code", {}, shown(next)),
                    `, given ${(100 * 2 ** -b).toFixed(1)}%: ${b.toFixed(2)} bits`));
    } else {
      box.append(el("div", {class: "actual"}, "the end of the text"));
    }
    const r = spans[t].getBoundingClientRect();
    box.hidden = false;
    box.style.left = `${Math.min(r.left, window.innerWidth - box.offsetWidth - 8) + window.scrollX}px`;
    box.style.top = `${r.bottom + window.scrollY + 4}px`;
    spans.forEach((s) => s.classList.remove("cur"));
    spans[t].classList.add("cur");
  }

  function hideBox() {
    $("box").hidden = true;
    spans.forEach((s) => s.classList.remove("cur"));
  }

  function wireText() {
    const box = $("text");
    const at = (e) => e.target.closest && e.target.closest("span[data-t]");
    box.addEventListener("mouseover", (e) => {
      const s = at(e);
      if (s && pinned === null) showBox(+s.dataset.t);
    });
    box.addEventListener("mouseleave", () => { if (pinned === null) hideBox(); });
    box.addEventListener("click", (e) => {  // a tap pins the box (and a second tap frees it)
      const s = at(e);
      if (!s) return;
      const t = +s.dataset.t;
      pinned = pinned === t ? null : t;
      showBox(t);
    });
  }

  // ---- pickers -------------------------------------------------------------------------------

  function select(layer, state, unit) {
    sel.layer = Math.max(0, Math.min(meta.layers - 1, layer | 0));
    sel.state = stateInfo.has(state) ? state : "h";
    sel.unit = ((unit | 0) % H + H) % H;
    $("layer").value = String(sel.layer);
    $("state").value = sel.state;
    $("unit").value = String(sel.unit);
    recolour();
    if (pinned !== null) showBox(pinned);
  }

  function wirePickers() {
    for (let k = 0; k < meta.layers; k++) $("layer").append(el("option", {value: k}, String(k)));
    for (const [name, , , label] of meta.states) $("state").append(el("option", {value: name}, label));
    $("unit").max = String(H - 1);
    $("layer").addEventListener("change", () => select(+$("layer").value, sel.state, sel.unit));
    $("state").addEventListener("change", () => select(sel.layer, $("state").value, sel.unit));
    $("unit").addEventListener("change", () => {
      const u = Math.round(+$("unit").value);
      select(sel.layer, sel.state, Number.isFinite(u) ? Math.max(0, Math.min(H - 1, u)) : 0);
    });
    $("prev").addEventListener("click", () => select(sel.layer, sel.state, sel.unit - 1));
    $("next").addEventListener("click", () => select(sel.layer, sel.state, sel.unit + 1));
    $("by-loss").addEventListener("change", () => { sel.byLoss = $("by-loss").checked; recolour(); });
    document.addEventListener("keydown", (e) => {
      const tag = e.target.tagName;
      if (tag === "TEXTAREA" || tag === "SELECT" || (tag === "INPUT" && e.target.id !== "unit")) return;
      if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
        e.preventDefault();
        select(sel.layer, sel.state, sel.unit + (e.key === "ArrowRight" ? 1 : -1));
      } else if (e.key === "Escape") {
        pinned = null;
        hideBox();
      }
    });
  }

  // ---- header, units, saturation -------------------------------------------------------------

  function drawHeader() {
    const nats = (x) => `${x.toFixed(4)} nats/char (${(x / Math.LN2).toFixed(3)} bits/char)`;
    const model = `${meta.cell.toUpperCase()}, ${meta.layers} \u00d7 ${meta.width}` +
      (meta.stack === "residual" ? `, residual (cells ${H} wide, MLP \u00d7${meta.mlp})` : "");
    const parts = [model,
                   `vocabulary of ${vocab.length}`, `step ${meta.step.toLocaleString("en")}`,
                   `validation loss ${meta.val_loss === null ? "not measured" : nats(meta.val_loss)}`,
                   `this text (${L.toLocaleString("en")} characters): ` +
                   (meta.mean_loss === null ? "too short to score" : nats(meta.mean_loss))];
    $("summary").textContent = parts.join(" \u00b7 ");
  }

  function drawUnits() {
    const box = $("units");
    for (let k = 0; k < meta.layers; k++) {
      const table = el("table", {}, el("caption", {}, `layer ${k}`));
      for (const u of meta.units.filter((e) => e.layer === k)) {
        const link = el("a", {href: "#", "data-layer": k, "data-state": u.state, "data-unit": u.unit,
                              title: meta.features[u.feature]}, `${u.state} ${u.unit}`);
        link.addEventListener("click", (e) => { e.preventDefault(); select(k, u.state, u.unit); });
        table.append(el("tr", {}, el("td", {}, link), el("td", {}, u.feature),
                        el("td", {class: "r"}, (u.r >= 0 ? "+" : "\u2212") + Math.abs(u.r).toFixed(2))));
      }
      box.append(table);
    }
  }

  function drawSaturation() {
    window.charrnnSaturation({meta, svg, $, select});
  }

  // ---- the live model (net.js, live.js) -------------------------------------------------------

  let live = null;  // the writing panel, when the page carries weights

  function recolourLive() {
    if (live) live.recolour();
  }

  function wireLive() {
    live = window.charrnnLive({
      meta, vocab, vocabIndex, H, stateNames, sel, el, shown, $,
      net: window.charrnnNet.makeNet(meta, view),
      colourOf: (state, v) => rgb(colour(scaleOf(state), v)),
    });
  }

  // ---- start ---------------------------------------------------------------------------------

  async function start() {
    data = await unpack();
    drawHeader();
    drawText();
    wirePickers();
    wireText();
    drawUnits();
    drawSaturation();
    if (meta.live) wireLive();
    const best = meta.units[0];
    if (best) select(best.layer, best.state, best.unit);
    else select(0, "h", 0);
  }

  window.charrnnViz = {
    ready: start(),
    meta,
    select,
    values: (layer, state, unit) => values(layer, state, unit),
    liveProbs: (str) => live.probs(str),
  };
})();
