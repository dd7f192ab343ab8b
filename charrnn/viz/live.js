/* charrnn viz: the page writing text itself, with --live: a prime typed in, a temperature, and
   Generate runs the model (net.js) character by character, each coloured by the unit chosen on
   the page as it is computed. window.charrnnLive(page) wires the panel and returns
   {probs(str), recolour()}; page holds what viz.js shares (meta, the vocabulary, the selection,
   its helpers and the net). */
"use strict";
window.charrnnLive = function (page) {
  const {meta, vocab, vocabIndex, H, stateNames, sel, el, shown, $, net, colourOf} = page;

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
    return colourOf(sel.state, v);
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
      const probs = window.charrnnNet.softmax(last.logits, Math.max(temperature, 1e-9));
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

  $("live").hidden = false;
  const t = $("temperature");
  t.addEventListener("input", () => { $("temperature-value").textContent = (+t.value).toFixed(2); });
  $("generate").addEventListener("click", generate);
  return {probs: liveProbs, recolour: recolourLive};
};
