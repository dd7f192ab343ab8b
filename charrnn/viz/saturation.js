/* charrnn viz: the gate-saturation plots, one per layer: each point is one unit's gate, placed by
   the fraction of characters at which it was below and above the bounds of meta. Clicking a point
   shows that unit. window.charrnnSaturation(page) draws them; page holds meta, viz.js's svg and $
   helpers and its select. */
"use strict";
window.charrnnSaturation = function (page) {
  const {meta, svg, $, select} = page;
  const GATE_COLOURS = {i: "#1f77b4", f: "#2ca02c", o: "#d62728", r: "#9467bd", z: "#ff7f0e"};

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
};
