/* charrnn viz: the model run forward in the page, one character at a time, in float64: the
   network of charrnn/model.py (and residual.py) and charrnn/cells, read from the weights the page
   carries with --live. Pure arithmetic, no page: viz.js draws what it computes.
   window.charrnnNet = {makeNet(meta, view), softmax(logits, temperature)}. */
"use strict";
(function () {
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

  // out (D,) = g * x / sqrt(mean(x^2) + eps): charrnn/positionwise.py's rms_norm of one row
  function rmsNorm(x, g, eps) {
    let m = 0;
    for (let j = 0; j < x.length; j++) m += x[j] * x[j];
    const r = 1 / Math.sqrt(m / x.length + eps), out = new Float64Array(x.length);
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
  function makeNet(meta, view) {
    const cell = meta.cell, residual = meta.stack === "residual", H = meta.hidden;
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
        if (residual) addVecMat(rmsNorm(x, p.norm, meta.norm_eps), p.Wx, a);
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
          const m = affine(rmsNorm(x, p.mlp_norm, meta.norm_eps), p.W1, p.b1).map(gelu);
          const back = affine(m, p.W2, p.b2);
          x = x.map((v, j) => v + back[j]);
        }
      });
      const logits = affine(residual ? rmsNorm(x, finalNorm, meta.norm_eps) : x, Wy, by);
      return {logits, probs: softmax(logits, 1), acts, state: next};
    }
    return {zero, step};
  }

  function softmax(logits, temperature) {
    const z = Array.from(logits, (v) => v / temperature), m = Math.max(...z);
    const e = z.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  }

  window.charrnnNet = {makeNet, softmax};
})();
