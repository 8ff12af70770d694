// The explorer page, part 1: the data, the graph, the header, the node and computation panels.
// Plain JavaScript and SVG, no network, no libraries; page.py joins this and panels.js into
// one strict function scope (page.html), so the two share their names.
const DATA = JSON.parse(document.getElementById("data").textContent);
const POSITIONS = DATA.positions || [];
const VITALS = DATA.vital_signs || [];
const state = {pos: Math.max(POSITIONS.length - 1, 0), vital: VITALS.length ? VITALS[0].key : null,
               pass: "forward", node: null, map: null, tab: "node", zoom: null};
const VIRIDIS = ["#440154", "#482878", "#3e4a89", "#31688e", "#26828e", "#1f9e89", "#35b779",
                 "#6ece58", "#b5de2b", "#fde725"];
const NO_VALUE = "#e4e4e4";
const SVGNS = "http://www.w3.org/2000/svg";

// ---- small helpers ---------------------------------------------------------------------
function el(tag, attrs, children) {
  const node = document.createElement(tag);
  return fill(node, attrs, children);
}
function svg(tag, attrs, children) {
  return fill(document.createElementNS(SVGNS, tag), attrs, children);
}
function fill(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") node.textContent = v;
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const child of children || []) if (child) node.append(child);
  return node;
}
function num(v) {  // page.py writes non-finite numbers as their names
  return typeof v === "string" && ["NaN", "Infinity", "-Infinity"].includes(v) ? Number(v) : v;
}
function fmt(v) {
  v = num(v);
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (!isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3).replace(/\.?0+e/, "e") : String(Number(v.toPrecision(4)));
}
function shapeText(shape) { return (shape || []).map(d => (d === null ? "N" : d)).join("×"); }
function zoomed(img) {  // small pictures drawn 2 to 6 pixels a pixel, to fit 520 x 360 where they can
  img.addEventListener("load", () => {
    const w = img.naturalWidth, h = img.naturalHeight;
    img.style.width = w * Math.max(2, Math.min(6, 520 / w, 360 / h)) + "px";
  });
  return img;
}
function clear(node) { node.replaceChildren(); return node; }
function position() { return POSITIONS[state.pos] || {}; }
function pick(obj, key) { return obj && Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined; }
function graph() { return (DATA.graphs || {})[state.pass] || {nodes: [], edges: []}; }
function findNode(id) {
  for (const pass of ["forward", "backward"]) {
    const found = (((DATA.graphs || {})[pass] || {}).nodes || []).find(n => n.id === id);
    if (found) return found;
  }
  return null;
}
function vitalInfo() { return VITALS.find(v => v.key === state.vital) || {key: null, label: "", scale: "linear"}; }
function colourAt(t) {
  t = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(t), VIRIDIS.length - 2), f = t - i;
  const a = hex(VIRIDIS[i]), b = hex(VIRIDIS[i + 1]);
  return "#" + a.map((c, k) => Math.round(c + (b[k] - c) * f).toString(16).padStart(2, "0")).join("");
}
function hex(c) { return [1, 3, 5].map(i => parseInt(c.slice(i, i + 2), 16)); }

// ---- colour scale: one range per vital sign over every position, so colours compare across steps
const scales = {};
function scale(key) {
  if (scales[key]) return scales[key];
  const log = (VITALS.find(v => v.key === key) || {}).scale === "log";
  let lo = Infinity, hi = -Infinity;
  for (const p of POSITIONS) for (const values of Object.values(p.vitals || {})) {
    const v = num(pick(values, key));
    if (typeof v !== "number" || !isFinite(v) || (log && v <= 0)) continue;
    lo = Math.min(lo, v); hi = Math.max(hi, v);
  }
  if (lo > hi) { lo = 0; hi = 1; }
  const f = log ? Math.log10 : (x => x);
  const span = f(hi) - f(lo) || 1;
  scales[key] = {lo, hi, log, t: v => (f(v) - f(lo)) / span};
  return scales[key];
}
function nodeValue(id) {
  return num(pick(pick(position().vitals, id), state.vital));
}
function nodeColour(v) {
  if (typeof v !== "number" || !isFinite(v)) return NO_VALUE;
  const s = scale(state.vital);
  return s.log && v <= 0 ? NO_VALUE : colourAt(s.t(v));
}

// ---- the graph ---------------------------------------------------------------------------
function drawGraph() {
  const g = graph();
  const panel = document.getElementById("graph");
  // fit the panel's width, but never below 70 %, where the nodes' 12 px labels stop being readable
  if (state.zoom === null) state.zoom = Math.max(0.7, Math.min(1, (panel.clientWidth - 12) / (g.width || 1)));
  const root = svg("svg", {width: g.width * state.zoom, height: g.height * state.zoom, viewBox: `0 0 ${g.width} ${g.height}`,
                           id: "graph-svg", "data-pass": state.pass});
  for (const c of g.clusters || []) {  // one dashed box per layer, as `cnngraph dot` draws them
    root.append(svg("rect", {class: "cluster", x: c.x, y: c.y, width: c.w, height: c.h, rx: 6}),
      svg("text", {class: "cluster-label", x: c.x + 4, y: c.y + 11, text: c.layer}));
  }
  for (const e of g.edges || []) {
    root.append(svg("path", {class: "edge", d: edgePath(e.points, g.engine === "dot"),
                             "data-from": e.from, "data-to": e.to, "marker-end": "url(#arrow)"}));
  }
  root.prepend(svg("defs", {}, [svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 6, markerHeight: 6, orient: "auto"}, [svg("path", {d: "M0,0L10,5L0,10z", fill: "#999"})])]));
  for (const n of g.nodes || []) {
    const lines = String(n.label || n.id).split(/\n|\\n/);  // DOT labels write a break as \n
    const group = svg("g", {class: "node", "data-node": n.id, "data-layer": n.layer, "data-op": n.op,
                            onclick: () => chooseNode(n.id)}, [
      svg("title", {text: n.id}),
      svg("rect", {x: n.x - n.w / 2, y: n.y - n.h / 2, width: n.w, height: n.h, rx: 4})]);
    lines.forEach((line, i) => group.append(svg("text", {x: n.x, y: n.y + (i - (lines.length - 1) / 2) * 13 + 4,
      "text-anchor": "middle", text: line})));
    root.append(group);
  }
  clear(panel).append(root);
  colourGraph();
  document.getElementById("zoom-label").textContent = `${Math.round(state.zoom * 100)} %`;
}
function edgePath(points, spline) {
  // Graphviz: a B-spline's 3n+1 control points, then (when one is drawn) the arrow's tip
  const xy = p => `${p[0]},${p[1]}`;
  if (!spline || points.length < 4) return "M" + points.map(xy).join(" L");
  const controls = points.length - ((points.length - 1) % 3 === 0 ? 0 : 1);
  let d = "M" + xy(points[0]);
  for (let i = 1; i + 2 < controls; i += 3) d += ` C${xy(points[i])} ${xy(points[i + 1])} ${xy(points[i + 2])}`;
  return d + points.slice(controls).map(p => " L" + xy(p)).join("");
}
function colourGraph() {
  for (const group of document.querySelectorAll("#graph .node")) {
    const id = group.dataset.node, v = nodeValue(id), colour = nodeColour(v);
    group.querySelector("rect").setAttribute("fill", colour);
    group.dataset.color = colour;
    group.dataset.value = typeof v === "number" ? String(v) : "";
    const rgb = hex(colour), light = rgb[0] * 0.3 + rgb[1] * 0.59 + rgb[2] * 0.11 > 140;
    for (const t of group.querySelectorAll("text")) t.setAttribute("fill", light ? "#111" : "#fff");
    group.classList.toggle("chosen", id === state.node);
  }
  drawLegend();
}
function drawLegend() {
  const info = vitalInfo(), s = scale(info.key), ticks = [];
  for (let i = 0; i <= 4; i++) {
    ticks.push(s.log ? s.lo * Math.pow(s.hi / s.lo, i / 4) : s.lo + (s.hi - s.lo) * i / 4);
  }
  clear(document.getElementById("legend")).append(
    el("div", {text: `${info.label}${s.log ? " (log scale)" : ""} over all steps; grey: no value`}),
    el("div", {class: "legend-bar", style: `background: linear-gradient(to right, ${VIRIDIS.join(",")})`}),
    el("div", {class: "legend-ticks"}, ticks.map(t => el("span", {class: "tick", text: fmt(t)}))));
}

// ---- header: slider, vital sign, pass, test image ---------------------------------------
function showStep() {
  const p = position(), label = document.getElementById("step-label");
  label.textContent = POSITIONS.length ? `step ${p.step} · epoch ${Number(p.epoch).toFixed(3)}` +
    (p.lr !== undefined ? ` · lr ${fmt(p.lr)}` : "") : "no positions recorded";
  label.dataset.step = p.step === undefined ? "" : p.step;
}
function setup() {
  const slider = document.getElementById("slider");
  slider.max = Math.max(POSITIONS.length - 1, 0);
  slider.value = state.pos;
  slider.disabled = POSITIONS.length < 2;
  slider.addEventListener("input", () => { state.pos = Number(slider.value); refresh(); });
  const select = document.getElementById("vital-select");
  for (const v of VITALS) select.append(el("option", {value: v.key, text: v.label}));
  select.addEventListener("change", () => { state.vital = select.value; colourGraph(); renderNode(); });
  const toggle = document.getElementById("pass-toggle");
  toggle.addEventListener("click", () => {
    state.pass = state.pass === "forward" ? "backward" : "forward";
    toggle.dataset.pass = state.pass;
    toggle.textContent = state.pass === "forward" ? "show backward graph" : "show forward graph";
    state.zoom = null;
    drawGraph();
  });
  const zoom = f => () => { state.zoom = Math.min(2, Math.max(0.2, state.zoom * f)); drawGraph(); };
  document.getElementById("zoom-in").addEventListener("click", zoom(1.25));
  document.getElementById("zoom-out").addEventListener("click", zoom(0.8));
  document.getElementById("zoom-fit").addEventListener("click", () => {  // the whole width, however small
    state.zoom = Math.max(0.2, Math.min(1, (document.getElementById("graph").clientWidth - 12) / (graph().width || 1)));
    drawGraph();
  });
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  const image = (DATA.test_images || [])[0];
  if (image) {
    document.getElementById("test-image").append(`image #${image.index}, a ${image.label} `,
      el("img", {src: image.png, alt: `test image ${image.index}`}));
  }
}
function refresh() {
  showStep(); colourGraph(); renderNode(); renderExplain();
}
function showTab(name) {
  state.tab = name;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const t of document.querySelectorAll(".tab")) t.hidden = t.id !== "tab-" + name;
}

// ---- the node panel ------------------------------------------------------------------------
function chooseNode(id) {
  state.node = id;
  colourGraph(); renderNode(); showTab("node");
}
function facts(rows) {
  return el("table", {class: "facts"}, rows.filter(r => r[1] !== undefined && r[1] !== null).map(
    ([k, v]) => el("tr", {}, [el("td", {class: "muted", text: k}), el("td", {text: Array.isArray(v) ? shapeText(v) : String(v)})])));
}
function mapFigures(layer, kind, record) {
  if (!record) return el("p", {class: "muted", text: "none recorded for this layer"});
  const caption = el("div", {class: "muted", text: `shape ${shapeText(record.shape)}, colours over ${fmt((record.range || [])[0])} … ${fmt((record.range || [])[1])} (blue −, white 0, red +; black: not finite)${record.note ? "; " + record.note : ""}`});
  if (record.values) {  // a layer of units: one strip, one pixel per unit; a click picks the unit
    const units = record.values.length;
    const strip = el("img", {class: "strip", src: record.png[0], alt: `${layer} ${kind}`, "data-layer": layer, "data-kind": kind,
                             style: `width:${Math.min(units * 8, 520)}px`,
                             title: "click a unit", onclick: e => chooseMap(layer, unitAt(e), kind)});
    const unitAt = e => Math.min(units - 1, Math.max(0, Math.floor(e.offsetX / e.currentTarget.clientWidth * units)));
    strip.addEventListener("mousemove", e => { strip.title = `unit ${unitAt(e)}: ${fmt(record.values[unitAt(e)])} (click: how it is computed)`; });
    return el("div", {}, [caption, strip]);
  }
  return el("div", {}, [caption,
    el("div", {class: "maps"}, record.png.map((src, j) => el("figure", {}, [
      el("img", {class: record.plane && record.plane[0] === 1 ? "map line" : "map", src, alt: `${layer} ${kind} ${j}`, "data-layer": layer, "data-map": j, "data-kind": kind,
                 onclick: () => chooseMap(layer, j, kind)}), el("figcaption", {text: String(j)})])))]);
}
function grid(values, chosenRow) {
  // a number: one cell; a list of numbers (b, β): rows of ten; nested lists: a row per entry,
  // once axes of length one are dropped (a kernel k_ij read as 1×5×5)
  while (Array.isArray(values) && values.length === 1 && Array.isArray(values[0])) values = values[0];
  const rows = !Array.isArray(values) ? [[values]] : values.some(Array.isArray)
    ? values.map(r => (Array.isArray(r) ? r.flat(Infinity) : [r]))
    : Array.from({length: Math.ceil(values.length / 10)}, (_, i) => values.slice(10 * i, 10 * i + 10));
  return el("table", {class: "grid"}, rows.map((r, i) => el("tr", {class: i === chosenRow ? "chosen" : null},
    r.map(v => el("td", {text: fmt(v)})))));
}
function renderNode() {
  const root = clear(document.getElementById("tab-node"));
  const n = state.node && findNode(state.node);
  if (!n) { root.append(el("p", {class: "muted", text: "Click a node in the graph to see its maps, kernels and checks."})); return; }
  const layer = (DATA.layers || {})[n.layer] || {}, p = position(), info = vitalInfo(), v = nodeValue(n.id);
  root.append(el("h2", {id: "node-title", text: `${n.id}`}),
    facts([["op", n.op], ["pass", n.pass], ["role", n.role], ["shape", n.shape], ["layer", n.layer],
           ["layer kind", layer.kind], ["layer shape", layer.shape], ["receptive field", layer.receptive_field]]),
    el("p", {}, [`${info.label} at step ${p.step}: `,
      el("span", {id: "node-value", class: "number", "data-node": n.id, "data-key": info.key,
                  "data-value": typeof v === "number" ? String(v) : "", text: fmt(v)})]));
  const vitals = pick(p.vitals, n.id);
  if (vitals) root.append(facts(VITALS.map(s => [s.label, fmt(pick(vitals, s.key))])));
  const checks = (layer.params || []).filter(q => pick(DATA.gradient_checks, q));
  if (checks.length) {
    root.append(el("h3", {text: "gradient check (finite differences, last position)"}), el("div", {}, checks.map(q => {
      const c = DATA.gradient_checks[q];
      return el("span", {class: "badge " + (c.ok ? "ok" : "bad"), "data-param": q, "data-ok": String(!!c.ok),
        text: `${q}: relative error ${fmt(c.rel_error)} ${c.ok ? "✓" : "✗"}`});
    })));
  }
  if (n.layer) {
    root.append(el("h3", {text: `feature maps of ${n.layer} (test image; click one: how it is computed)`}),
      mapFigures(n.layer, "maps", pick(p.maps, n.layer)),
      el("h3", {text: `δ maps of ${n.layer}`}), mapFigures(n.layer, "deltas", pick(p.deltas, n.layer)));
  }
  for (const q of layer.params || []) {
    const k = pick(p.kernels, q);
    if (!k) continue;
    const how = (k.tile ? "row j, tile i: the kernel from input map i to output map j" : "rows: outputs, columns: inputs") +
      (k.rows !== undefined && k.rows < k.shape[0] ? `; the first ${k.rows} of ${k.shape[0]} rows` : "");
    root.append(el("h3", {text: `${q}: shape ${shapeText(k.shape)}, colours over ${fmt(k.range[0])} … ${fmt(k.range[1])} (${how})`}),
      el("div", {class: "maps"}, k.png.map((src, i) => zoomed(el("img", {class: "kernel", src, alt: `${q} ${i}`, "data-param": q, "data-index": i})))));
  }
  if (Array.isArray(layer.connections)) {
    const inputs = 1 + Math.max(...layer.connections.flat(), 0);
    const chosen = state.map && state.map.layer === n.layer ? state.map.index : -1;
    const alpha = pick(p.scalars, n.layer + ".alpha");  // learned connections: each cell shaded by its α
    const cell = (row, j, i) => {
      if (!row.includes(i)) return el("td", {text: "·"});
      const a = alpha ? num(alpha[j][i]) : null;
      return el("td", {class: alpha ? null : "on", text: alpha ? fmt(Number(a.toFixed(2))) : String(i),
                       title: alpha ? `α[${j}][${i}] = ${fmt(a)}` : null,
                       style: alpha ? `background: rgba(58,110,165,${Math.min(1, Math.max(0, a)).toFixed(3)}); color: ${a > 0.5 ? "#fff" : "#222"}` : null});
    };
    root.append(el("h3", {text: "connection table (row j: the input maps output map j reads" +
        (alpha ? `; learned: each cell α, shaded by it, at step ${p.step})` : ")")}),
      el("table", {class: "grid", id: "connections"}, [el("tr", {}, [el("td", {text: "j \\ i"})].concat(
        Array.from({length: inputs}, (_, i) => el("td", {class: "muted", text: String(i)}))))].concat(
        layer.connections.map((row, j) => el("tr", {class: j === chosen ? "chosen" : null, "data-row": j},
          [el("td", {text: `${j}:`})].concat(Array.from({length: inputs}, (_, i) => cell(row, j, i))))))));
  }
  for (const [q, s] of Object.entries(p.scalars || {})) {  // b, beta, and alpha (C3.alpha)
    if (q === n.layer + ".alpha" && Array.isArray(layer.connections)) continue;  // in the table above
    if (q.startsWith(n.layer + ".")) root.append(el("h3", {text: q}), el("div", {id: "scalars-" + q}, [grid(s)]));
  }
}

// ---- the computation panel -----------------------------------------------------------------
function chooseMap(layer, index, kind) {
  state.map = {layer, index, kind};
  renderExplain(); showTab("explain");
}
function explainedAt(kind, layer, index) {  // the positions whose data explain this map
  const key = kind === "maps" ? "explain" : "explain_delta";
  return POSITIONS.flatMap((p, i) => (pick(pick(p[key], layer), String(index)) ? [i] : []));
}
function moveTo(i) {  // the slider to position i
  state.pos = i;
  document.getElementById("slider").value = i;
  refresh();
}
function inputLayers(layer) {
  const g = DATA.graphs.forward, byId = {};
  for (const n of g.nodes) byId[n.id] = n;
  const found = new Set();
  for (const e of g.edges) {
    const a = byId[e.from], b = byId[e.to];
    if (a && b && b.layer === layer && a.layer && a.layer !== layer) found.add(a.layer);
  }
  return [...found];
}
function bigMap(src, pixel, record) {
  // plane: the PNG's height and width where it is not the map's (a 1-D strip, a 3-D map's
  // middle slice at "depth": the pixel is marked only when it lies on that slice)
  const shape = record.shape, plane = record.plane, line = plane && plane[0] === 1;
  const frame = el("div", {class: line ? "pixel-frame line" : "pixel-frame"}, [el("img", {src, alt: "chosen map"})]);
  const px = pixel && (pixel.length === 1 ? [0, pixel[0]] : pixel.slice(-2));
  const onSlice = !pixel || record.depth === undefined || pixel[0] === record.depth;
  if (px && onSlice && shape && shape.length >= 2) {
    const [h, w] = plane || shape.slice(-2), size = 140, high = line ? 20 : size;
    frame.append(el("div", {class: "pixel-mark", style: `left:${px[1] * size / w}px;top:${px[0] * high / h}px;width:${size / w}px;height:${high / h}px`}));
  }
  return frame;
}
function oneEach(weights) {  // one weight per input (α, a 1×1 kernel each): a row beside the partials, not a column
  return Array.isArray(weights) && weights.every(w => flat(w).length === 1) ? weights.map(w => flat(w)[0]) : weights;
}
function renderStep(step, i) {
  const parts = [el("div", {}, [el("b", {text: `${i + 1}. ${step.op || ""}`}), step.text ? ` — ${step.text}` : ""])];
  const row = el("div", {class: "row"});
  for (const input of step.inputs || []) {
    row.append(el("div", {class: "input"}, [el("div", {class: "muted", text: `${input.name}${input.map !== undefined ? " map " + input.map : ""}`}), grid(input.values)]));
  }
  for (const part of step.parts || []) {  // an op rule's explain: {label, values, weights, partial}
    row.append(el("div", {class: "part"}, [el("div", {class: "muted", text: part.label || ""}),
      part.values !== undefined ? grid(part.values) : null,
      part.weights !== undefined ? el("div", {}, [el("div", {class: "muted", text: "weights"}), grid(part.weights)]) : null,
      part.partial !== undefined ? el("div", {}, ["→ ", el("span", {class: "number", text: fmt(part.partial)})]) : null]));
  }
  if (step.combine) row.append(el("div", {class: "muted", text: `combined: ${step.combine}`}));
  if (step.weights !== undefined) row.append(el("div", {}, [el("div", {class: "muted", text: "weights"}), grid(oneEach(step.weights))]));
  if (step.partial !== undefined) row.append(el("div", {}, [el("div", {class: "muted", text: "partial"}), grid(step.partial)]));
  parts.push(row);
  if (step.result !== undefined) parts.push(el("div", {}, ["= ", el("span", {class: "number step-result", "data-value": String(num(step.result)), text: fmt(step.result)})]));
  return el("div", {class: "step"}, parts);
}
function renderExplain() {
  const root = clear(document.getElementById("tab-explain"));
  const m = state.map;
  if (!m) { root.append(el("p", {class: "muted", text: "Click a feature map or a δ map in the node panel to see how it is computed."})); return; }
  if (!state.unpacked) { root.append(el("p", {class: "muted", text: "This browser cannot unpack the page's step-by-step computations (it lacks DecompressionStream)."})); return; }
  const p = position(), record = pick(pick(m.kind === "maps" ? p.maps : p.deltas, m.layer), "png") ? (m.kind === "maps" ? p.maps : p.deltas)[m.layer] : null;
  const explained = pick(pick(m.kind === "maps" ? p.explain : p.explain_delta, m.layer), String(m.index));
  const what = m.kind === "maps" ? "feature map" : "δ map";
  root.append(el("h2", {id: "explain-title", text: `${m.layer} ${what} ${m.index} at step ${p.step}`}));
  const src = record && record.png[m.index];
  if (src && !record.values) root.append(bigMap(src, explained && explained.pixel, record));
  if (record && record.values && !explained) root.append(el("p", {}, [`value: `, el("span", {class: "number", text: fmt(record.values[m.index])})]));
  if (explained) {
    const px = explained.pixel || [];
    root.append(el("p", {}, [`value at pixel (${px.join(", ")}): `, el("span", {id: "explain-value", class: "number",
      "data-value": String(num(explained.value)), text: fmt(explained.value)})]));
    (explained.steps || []).forEach((s, i) => root.append(renderStep(s, i)));
    return;
  }
  const at = explainedAt(m.kind, m.layer, m.index);
  if (at.length) {  // explained at other positions: offer the nearest first, then all of them
    const near = at.reduce((a, b) => (Math.abs(b - state.pos) < Math.abs(a - state.pos) ? b : a));
    const jump = i => el("button", {type: "button", class: "jump", "data-pos": i, "data-step": POSITIONS[i].step,
                                    text: `step ${POSITIONS[i].step}`, onclick: () => moveTo(i)});
    root.append(el("p", {id: "explain-elsewhere"}, [`The page holds this ${what}'s step-by-step computation at ${at.length} ` +
      `of the ${POSITIONS.length} steps (every map at the first and the last, some at each step between). Nearest: `,
      Object.assign(jump(near), {id: "explain-jump"})]), el("div", {class: "jumps"}, at.map(jump)));
  } else {
    root.append(el("p", {class: "muted", text: "The page holds no step-by-step computation of this map (its op cannot " +
      "explain a value); its input maps and its output:"}));
  }
  for (const name of inputLayers(m.layer)) {
    root.append(el("h3", {text: `input: ${name}`}), mapFigures(name, m.kind, pick(m.kind === "maps" ? p.maps : p.deltas, name)));
  }
}
