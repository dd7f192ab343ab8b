/* charrnn viz: the page's behaviour. It reads the JSON in #viz-meta and the arrays packed by
   pack.py in #viz-blob, then draws the text coloured by one unit, the pickers and legend, the
   hover box of the model's guesses, the ranked units and the gate-saturation plots. With live
   weights it also runs the model forward itself, in float64, to write text in the page.
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
  let net = null;  // the live model, when the page carries weights
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

  const GATE_COLOURS = {i: "#1f77b4", f: "#2ca02c", o: "#d62728", r: "#9467bd", z: "#ff7f0e"};

  function drawSaturation() {
    const [low, high] = meta.saturation_bounds, box = $("saturation");
    const gates = Object.keys(meta.saturation[0] || {});
    if (!gates.length) {
      $("saturation-hint").textContent = "A vanilla RNN has no gates.";
      return;
    }
    $("saturation-hint").textContent = `Each point is one unit's gate: the fraction of characters ` +
      `at which it was below ${low} (left-saturated, across) and above ${high} (right-saturated, ` +
      `up). Click a point to show it.`;
    const S = 200, M = 34;  // plot side and margin, px
    meta.saturation.forEach((layer, k) => {
      const plot = svg("svg", {width: S + M + 10, height: S + M + 22, "data-layer": k,
                               role: "img", "aria-label": `gate saturation, layer ${k}`});
      const g = svg("g", {transform: `translate(${M},10)`});
      g.append(svg("rect", {x: 0, y: 0, width: S, height: S, fill: "#fafafa", stroke: "#999"}),
               svg("line", {x1: 0, y1: 0, x2: S, y2: S, stroke: "#ccc", "stroke-dasharray": "3 3"}));
      for (const tick of [0, 0.5, 1]) {
        g.append(svg("text", {x: tick * S, y: S + 12, "text-anchor": "middle"}, String(tick)),
                 svg("text", {x: -4, y: S - tick * S + 3, "text-anchor": "end"}, String(tick)));
      }
      g.append(svg("text", {x: S / 2, y: S + 24, "text-anchor": "middle"}, `fraction < ${low}`),
               svg("text", {x: 0, y: 0, transform: `translate(${-24},${S / 2}) rotate(-90)`,
                            "text-anchor": "middle"}, `fraction > ${high}`));
      gates.forEach((gate, j) => {
        const [lo, hi] = layer[gate];
        for (let u = 0; u < lo.length; u++) {
          const c = svg("circle", {cx: (lo[u] * S).toFixed(1), cy: ((1 - hi[u]) * S).toFixed(1), r: 2.5,
                                   fill: GATE_COLOURS[gate], "data-layer": k, "data-gate": gate,
                                   "data-unit": u},
                        svg("title", {}, `layer ${k}, gate ${gate}, unit ${u}`));
          c.addEventListener("click", () => select(k, gate, u));
          g.append(c);
        }
        g.append(svg("circle", {cx: S - 40, cy: 12 + 13 * j, r: 4, fill: GATE_COLOURS[gate], class: "key"}),
                 svg("text", {x: S - 32, y: 15 + 13 * j}, gate));
      });
      g.append(svg("text", {x: 4, y: 12}, `layer ${k}`));
      plot.append(g);
      box.append(plot);
    });
  }

  // ---- the live model ------------------------------------------------------------------------

  const sigmoid = (x) => 1 / (1 + Math.exp(-x));

  // out (G,) += x (D,) W (D, G), W row-major
  function addVecMat(x, W, out) {
    const G = out.length;
    for (let d = 0; d < x.length; d++) {
      const xd = x[d];
      if (xd === 0) continue;
      const row = d * G;
      for (let j = 0; j < G; j++) out[j] += xd * W[row + j];
    }
  }

  // out (D,) = g * x / sqrt(mean(x^2) + eps): charrnn/layers.py's rms_norm of one row
  function rmsNorm(x, g) {
    let m = 0;
    for (let j = 0; j < x.length; j++) m += x[j] * x[j];
    const r = 1 / Math.sqrt(m / x.length + meta.norm_eps), out = new Float64Array(x.length);
    for (let j = 0; j < x.length; j++) out[j] = x[j] * r * g[j];
    return out;
  }

  const GELU_C = Math.sqrt(2 / Math.PI);
  const gelu = (a) => 0.5 * a * (1 + Math.tanh(GELU_C * (a + 0.044715 * a * a * a)));

  // one cell step: a (G,) = x Wx + b, prev {h, c} -> {h, c, acts by name} (charrnn/cells)
  function cellStep(cell, p, a, prev, H) {
    const h = new Float64Array(H), out = {h};
    let c = prev.c;
    if (cell === "mingru") {  // z, n = tanh(.) from the input; h = (1 - z) h' + z n
      const [z, n] = [0, 1].map(() => new Float64Array(H));
      for (let j = 0; j < H; j++) {
        z[j] = sigmoid(a[j]);
        n[j] = Math.tanh(a[H + j]);
        h[j] = (1 - z[j]) * prev.h[j] + z[j] * n[j];
      }
      return {h, c, acts: {h, z, n}};
    }
    if (cell === "minlstm") {  // f, i, n from the input; i' = i / (f + i); h = (1 - i') h' + i' n
      const [i, n] = [0, 1].map(() => new Float64Array(H));
      const logSigmoid = (x) => Math.min(x, 0) - Math.log1p(Math.exp(-Math.abs(x)));
      for (let j = 0; j < H; j++) {
        i[j] = sigmoid(logSigmoid(a[H + j]) - logSigmoid(a[j]));  // as minlstm.py: no 0 / 0
        n[j] = Math.tanh(a[2 * H + j]);
        h[j] = (1 - i[j]) * prev.h[j] + i[j] * n[j];
      }
      return {h, c, acts: {h, i, n}};
    }
    const rec = new Float64Array(a.length);
    addVecMat(prev.h, p.Wh, rec);
    if (cell === "rnn") {
      for (let j = 0; j < H; j++) h[j] = Math.tanh(a[j] + rec[j]);
    } else if (cell === "lstm") {  // gates i, f, o, g; c = f c' + i g; h = o tanh(c)
      const [i, f, o, g, tc] = [0, 1, 2, 3, 4].map(() => new Float64Array(H));
      c = new Float64Array(H);
      for (let j = 0; j < H; j++) {
        i[j] = sigmoid(a[j] + rec[j]);
        f[j] = sigmoid(a[H + j] + rec[H + j]);
        o[j] = sigmoid(a[2 * H + j] + rec[2 * H + j]);
        g[j] = Math.tanh(a[3 * H + j] + rec[3 * H + j]);
        c[j] = f[j] * prev.c[j] + i[j] * g[j];
        tc[j] = Math.tanh(c[j]);
        h[j] = o[j] * tc[j];
      }
      Object.assign(out, {c: tc, i, f, o, g});
    } else {  // GRU, gates r, z, n: n = tanh(x Wx_n + b_n + r (h' Wh_n + bhn))
      const [r, z, n] = [0, 1, 2].map(() => new Float64Array(H));
      for (let j = 0; j < H; j++) {
        r[j] = sigmoid(a[j] + rec[j]);
        z[j] = sigmoid(a[H + j] + rec[H + j]);
        n[j] = Math.tanh(a[2 * H + j] + r[j] * (rec[2 * H + j] + p.bhn[j]));
        h[j] = (1 - z[j]) * n[j] + z[j] * prev.h[j];
      }
      Object.assign(out, {r, z, n});
    }
    return {h, c, acts: out};
  }

  // x (D,) + x W (D, P) + b (P,) -> (P,)
  function affine(x, W, b) {
    const out = Float64Array.from(b);
    addVecMat(x, W, out);
    return out;
  }

  // the network of charrnn/model.py (and residual.py) and charrnn/cells, one character at a
  // time, in float64. H here is the cells' width, meta.width the residual stream's.
  function makeNet() {
    const cell = meta.cell, residual = meta.stack === "residual";
    const G = {rnn: 1, lstm: 4, gru: 3, mingru: 2, minlstm: 3}[cell] * H;
    const f64 = (name) => Float64Array.from(view("w." + name));
    const has = (name) => ("w." + name) in meta.index;
    const layers = [];
    for (let k = 0; k < meta.layers; k++) {
      const p = {};
      for (const name of ["Wx", "Wh", "b", "bhn", "norm", "Wo", "bo", "mlp_norm", "W1", "b1",
                          "W2", "b2"]) {
        if (has(`l${k}.${name}`)) p[name] = f64(`l${k}.${name}`);
      }
      layers.push(p);
    }
    const Wy = f64("Wy"), by = f64("by");
    const embed = residual ? f64("embed") : null, finalNorm = residual ? f64("norm") : null;
    const D = meta.width;
    const zero = () => layers.map(() => ({h: new Float64Array(H), c: new Float64Array(H)}));

    // id, state -> {logits (V,), probs (V,), acts: per layer {name: (H,)}, state}
    function step(id, state) {
      const acts = [], next = [];
      let x = residual ? embed.slice(id * D, (id + 1) * D) : null;
      layers.forEach((p, k) => {
        const a = Float64Array.from(p.b);
        if (residual) addVecMat(rmsNorm(x, p.norm), p.Wx, a);
        else if (k === 0) for (let j = 0; j < G; j++) a[j] += p.Wx[id * G + j];  // one-hot row
        else addVecMat(x, p.Wx, a);
        const out = cellStep(cell, p, a, state[k], H);
        acts.push(out.acts);
        next.push({h: out.h, c: out.c});
        if (!residual) {
          x = out.h;
          return;
        }
        const branch = affine(out.h, p.Wo, p.bo);
        x = x.map((v, j) => v + branch[j]);
        if (p.W1) {
          const m = affine(rmsNorm(x, p.mlp_norm), p.W1, p.b1).map(gelu);
          const back = affine(m, p.W2, p.b2);
          x = x.map((v, j) => v + back[j]);
        }
      });
      const logits = affine(residual ? rmsNorm(x, finalNorm) : x, Wy, by);
      return {logits, probs: softmax(logits, 1), acts, state: next};
    }
    return {zero, step};
  }

  function softmax(logits, temperature) {
    const z = Array.from(logits, (v) => v / temperature), m = Math.max(...z);
    const e = z.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  }

  function idsOf(str) {
    const chars = Array.from(str), bad = [...new Set(chars.filter((ch) => !vocabIndex.has(ch)))];
    if (bad.length) throw new Error("characters not in the vocabulary: " + bad.map(shown).join(", "));
    return chars.map((ch) => vocabIndex.get(ch));
  }

  // the model's next-character probabilities after each character of str, from a zero state
  function liveProbs(str) {
    let state = net.zero();
    return idsOf(str).map((id) => {
      const out = net.step(id, state);
      state = out.state;
      return out.probs;
    });
  }

  const liveChars = [];  // [span, snapshot of every state: Float32Array (layers, states, H)]

  function snapshot(acts) {
    const snap = new Float32Array(meta.layers * stateNames.length * H);
    acts.forEach((layer, k) => stateNames.forEach((name, s) => {
      snap.set(layer[name], (k * stateNames.length + s) * H);
    }));
    return snap;
  }

  function liveColour(snap) {
    const v = snap[(sel.layer * stateNames.length + stateNames.indexOf(sel.state)) * H + sel.unit];
    return rgb(colour(scaleOf(sel.state), v));
  }

  function recolourLive() {
    for (const [s, snap] of liveChars) s.style.backgroundColor = liveColour(snap);
  }

  let running = null;

  function generate() {
    if (running) {
      clearTimeout(running);
      running = null;
      $("generate").textContent = "Generate";
      return;
    }
    const out = $("live-out"), temperature = +$("temperature").value;
    const length = Math.max(1, Math.min(5000, Math.round(+$("length").value) || 1));
    out.replaceChildren();
    liveChars.length = 0;
    let ids;
    try {
      ids = idsOf($("prime").value);
    } catch (e) {
      out.textContent = e.message;
      return;
    }
    let state = net.zero(), last = null;
    const write = (id, step) => {
      const ch = vocab[id], s = el("span", {}, ch === "\n" ? "\n" : shown(ch) === ch || ch === " " ? ch : shown(ch));
      const snap = snapshot(step.acts);
      liveChars.push([s, snap]);
      s.style.backgroundColor = liveColour(snap);
      out.append(s);
    };
    // with no prime, start after a newline, as `charrnn sample` does
    if (!ids.length) {
      last = net.step(vocabIndex.has("\n") ? vocabIndex.get("\n") : 0, state);
      state = last.state;
    }
    for (const id of ids) {
      last = net.step(id, state);
      state = last.state;
      write(id, last);
    }
    let left = length;
    $("generate").textContent = "Stop";
    const tick = () => {
      const probs = softmax(last.logits, Math.max(temperature, 1e-9));
      let id = 0;
      if (temperature === 0) {
        id = probs.indexOf(Math.max(...probs));
      } else {
        let u = Math.random(), acc = 0;
        for (id = 0; id < probs.length - 1; id++) if ((acc += probs[id]) > u) break;
      }
      last = net.step(id, state);
      state = last.state;
      write(id, last);
      if (--left > 0) {
        running = setTimeout(tick, 8);
      } else {
        running = null;
        $("generate").textContent = "Generate";
      }
    };
    running = setTimeout(tick, 0);
  }

  function wireLive() {
    net = makeNet();
    $("live").hidden = false;
    const t = $("temperature");
    t.addEventListener("input", () => { $("temperature-value").textContent = (+t.value).toFixed(2); });
    $("generate").addEventListener("click", generate);
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
    liveProbs: (str) => liveProbs(str),
  };
})();
