// The explorer page, part 2: charts, the training, mistakes and model panels, the banners,
// and the start.  Shares page.js's scope (see there).

// ---- charts --------------------------------------------------------------------------------
function chart(title, series, options) {  // options: {id, xlabel, log (a log-scaled y axis), xlog (and x)}
  const W = 560, H = 180, R = 110, T = 18, B = 26;
  const logOf = v => (v > 0 ? Math.log10(v) : null);
  if (options.log) series = series.map(s => ({...s, points: s.points.map(([x, y]) => [x, logOf(y)])}));
  if (options.xlog) series = series.map(s => ({...s, points: s.points.filter(q => q[0] > 0).map(([x, y]) => [Math.log10(x), y])}));
  const finite = q => typeof q[1] === "number" && isFinite(q[1]);
  series = series.filter(s => s.points.some(finite));  // a series without values (no validation) is not listed
  const label = y => fmt(options.log ? Number(Math.pow(10, y).toPrecision(3)) : y);
  const pts = series.flatMap(s => s.points).filter(finite);
  const root = svg("svg", {class: "chart", width: W, height: H, id: options.id});
  if (!pts.length) { root.append(svg("text", {x: 48, y: 12, text: title}), svg("text", {x: 48, y: H / 2, text: "no values"})); return root; }
  let [x0, x1] = [Math.min(...pts.map(q => q[0])), Math.max(...pts.map(q => q[0]))];
  let [y0, y1] = [Math.min(...pts.map(q => q[1])), Math.max(...pts.map(q => q[1]))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const ticks = [y0, (y0 + y1) / 2, y1], short = ticks.map(label);  // 4 digits, or 7 where they tie
  const texts = new Set(short).size === 3 || options.log ? short : ticks.map(y => String(Number(y.toPrecision(7))));
  const L = 10 + 6 * Math.max(...texts.map(t => t.length));  // room for the longest tick label (10 px font)
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - R), Y = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  root.append(svg("text", {x: L, y: 12, text: title}), svg("line", {class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B}),
    svg("line", {class: "axis", x1: L, y1: T, x2: L, y2: H - B}));
  ticks.forEach((y, i) => root.append(svg("text", {x: L - 4, y: Y(y) + 3, "text-anchor": "end", text: texts[i]})));
  const xLabel = x => fmt(options.xlog ? Math.round(Math.pow(10, x)) : x);
  for (const x of [x0, (x0 + x1) / 2, x1]) root.append(svg("text", {x: X(x), y: H - B + 12, "text-anchor": "middle", text: xLabel(x)}));
  root.append(svg("text", {x: (W - R + L) / 2, y: H - 2, "text-anchor": "middle", text: options.xlabel + (options.xlog ? " (log scale)" : "")}));
  series.forEach((s, i) => {
    const good = s.points.filter(q => typeof q[1] === "number" && isFinite(q[1]));
    const colour = s.colour || `hsl(${(i * 47) % 360},65%,42%)`;
    if (good.length > 1) root.append(svg("polyline", {class: "series", stroke: colour, points: good.map(q => `${X(q[0])},${Y(q[1])}`).join(" ")}));
    for (const q of good.length < 12 ? good : []) root.append(svg("circle", {cx: X(q[0]), cy: Y(q[1]), r: 2.5, fill: colour}));
    if (series.length <= 8) root.append(svg("text", {x: W - R + 6, y: T + 12 * i + 8, fill: colour, text: s.name}));
  });
  return root;
}
function flat(values) { return Array.isArray(values) ? values.flat(Infinity) : [values]; }
function history(records, key, name) {  // [{step, key: number or nested list}] -> one series per entry
  const width = records.length ? flat(records[0][key]).length : 0;
  return Array.from({length: width}, (_, i) => ({name: width > 1 ? `${name}[${i}]` : name,
    points: records.map(r => [r.step, num(flat(r[key])[i])])}));
}

// ---- the training panel --------------------------------------------------------------------
function renderTraining() {
  // curves: metrics.json's "epochs" list (test error beside it), or {"epochs", "test_error"}
  const root = document.getElementById("tab-training"), curves = DATA.curves || [];
  const epochs = Array.isArray(curves) ? curves : (curves.epochs || []);
  const testError = num(Array.isArray(curves) ? DATA.test_error : curves.test_error);
  const last = epochs.length ? epochs[epochs.length - 1].epoch : 1;
  const errors = ["train_error", "val_error"].map((k, i) => ({name: k.replace("_", " "), colour: ["#3a6ea5", "#c8671b"][i],
    points: epochs.map(e => [e.epoch, num(e[k])])}));
  if (typeof testError === "number") errors.push({name: "test error", colour: "#2b8a3e", points: [[last, testError]]});
  root.append(el("h2", {text: "training curves"}), chart("error", errors, {xlabel: "epoch", id: "curve-error"}),
    chart("training loss", [{name: "train loss", colour: "#3a6ea5", points: epochs.map(e => [e.epoch, num(e.train_loss)])}], {xlabel: "epoch", id: "curve-loss"}));
  renderConfusion(root);
  const alpha = DATA.alpha_history || {}, sdlm = DATA.sdlm_steps || {};
  root.append(el("h2", {text: "α over training (learned connections)"}));
  if (!Object.keys(alpha).length) root.append(el("p", {class: "muted", text: "this model learns no connection weights"}));
  for (const [layer, records] of Object.entries(alpha)) root.append(chart(`${layer}: α`, history(records, "alpha", "α"), {xlabel: "step", id: "alpha-" + layer, xlog: true}));
  root.append(el("h2", {text: "SDLM step sizes"}));
  if (!Object.keys(sdlm).length) root.append(el("p", {class: "muted", text: "this run did not use SDLM"}));
  if (Object.keys(sdlm).length) {
    root.append(chart("each layer's step size lr/(μ + h) (log scale)", Object.entries(sdlm).flatMap(
      ([layer, records]) => history(records, "value", layer)), {xlabel: "step", id: "sdlm", log: true, xlog: true}));
  }
}
function renderConfusion(root) {
  const c = DATA.confusion;
  root.append(el("h2", {text: "confusion matrix (rows: true label, columns: predicted; click a cell: its images)"}));
  if (!c || !c.matrix) { root.append(el("p", {class: "muted", text: "no confusion matrix"})); return; }
  const images = el("div", {id: "confusion-images"});
  const classes = c.matrix.length;
  const header = el("tr", {}, [el("th", {text: "t\\p"})].concat(Array.from({length: classes}, (_, j) => el("th", {text: String(j)}))));
  const rows = c.matrix.map((row, t) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return el("tr", {}, [el("th", {text: String(t)})].concat(row.map((count, p) => el("td", {
      class: t === p ? "diag" : null, "data-true": t, "data-pred": p, text: String(count),
      style: `background: ${count ? (t === p ? "rgba(58,110,165," : "rgba(200,103,27,") + (0.15 + 0.85 * count / total).toFixed(3) + ")" : "#fff"}`,
      onclick: event => showCell(event.currentTarget, t, p, images)}))));
  });
  root.append(el("table", {id: "confusion"}, [header, ...rows]), images);
}
function showCell(cell, t, p, images) {
  for (const other of document.querySelectorAll("#confusion td.chosen")) other.classList.remove("chosen");
  cell.classList.add("chosen");
  const list = pick(DATA.confusion.images, `${t},${p}`) || [];
  clear(images).append(el("p", {id: "confusion-caption", text: `true ${t}, predicted ${p}: ${DATA.confusion.matrix[t][p]} test images, ${list.length} shown`}),
    el("div", {class: "maps"}, list.map(im => el("figure", {}, [el("img", {class: "thumb", src: im.png, alt: `test image ${im.index}`, "data-index": im.index}), el("figcaption", {text: `#${im.index}`})]))));
}

// ---- why it is wrong, the model, the divergence banner ---------------------------------------
function renderMistakes() {
  const root = document.getElementById("tab-mistakes"), mistakes = DATA.mistakes || [];
  root.append(el("h2", {text: "the most confidently wrong test images"}),
    el("p", {class: "muted", text: "saliency: dE/dx by the derived backward graph; occlusion: the drop in the true class's probability when a patch is hidden (2-D images only; blue −, white 0, red +); a 1-D input drawn whole, a row per map, a 3-D one by its middle slice"}));
  if (!mistakes.length) root.append(el("p", {class: "muted", text: "no mistakes on the test images"}));
  root.append(el("div", {class: "cards"}, mistakes.map(m => el("div", {class: "mistake", "data-index": m.index}, [
    el("div", {text: `#${m.index}: true ${m.label}, predicted ${m.predicted} (${fmt(100 * num(m.confidence))} %)`}),
    el("div", {class: "row"}, [["image", m.png], ["saliency", m.saliency_png], ["occlusion", m.occlusion_png]].filter(([, src]) => src).map(
      ([name, src]) => el("figure", {}, [el("img", {class: "thumb", src, alt: `${name} of test image ${m.index}`, "data-kind": name}), el("figcaption", {text: name})])))]))));
}
function renderModel() {
  const root = document.getElementById("tab-model"), run = DATA.run || {}, model = DATA.model || {};
  root.append(el("h2", {text: "run"}), facts([["folder", run.dir], ["backend", run.backend], ["dtype", run.dtype], ["epochs", run.epochs],
    ["steps per epoch", run.steps_per_epoch], ["page made in", run.made_in_s !== undefined ? fmt(run.made_in_s) + " s" : undefined],
    ["model file", model.file], ["model hash", model.hash]]), el("h2", {text: "model"}), el("pre", {class: "model", text: model.text || ""}));
}
function renderDivergence() {
  const d = DATA.divergence, banner = document.getElementById("divergence");
  if (!d) return;
  banner.hidden = false;
  banner.append(el("b", {text: "This run diverged. "}), `epoch ${d.epoch}: ${d.reason || ""}`);
  const bad = d.first_bad;
  if (!bad) return;
  const where = ["step", "global_step"].filter(k => bad[k] !== undefined).map(k => `${k.replace("_", " ")} ${bad[k]}`).join(", ");
  banner.append(el("div", {id: "first-bad"}, [`first non-finite value: the ${bad.pass} pass, node `,
    el("a", {href: "#", "data-node": bad.node, text: bad.node, onclick: e => { e.preventDefault(); if (findNode(bad.node)) chooseNode(bad.node); }}),
    ` (${bad.op}${bad.layer ? ", layer " + bad.layer : ""})${where ? ", " + where : ""}; its inputs: ` +
    (bad.inputs || []).map(i => `${i.name} ${shapeText(i.shape)} in [${fmt(i.min)}, ${fmt(i.max)}]${i.nan ? " NaN" : ""}${i.inf ? " inf" : ""}`).join("; ")]));
}

function renderNotes() {  // what the page could not show, and why (no snapshots, ...)
  const notes = DATA.notes || [], box = document.getElementById("notes");
  box.hidden = !notes.length;
  for (const note of notes) box.append(el("div", {text: note}));
}

async function unpack() {  // each position's gzipped step-by-step computations (page.py's pack)
  if (typeof DecompressionStream === "undefined") return false;
  await Promise.all(POSITIONS.map(async p => {
    if (!p.packed) return;
    const bytes = Uint8Array.from(atob(p.packed), c => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    Object.assign(p, JSON.parse(await new Response(stream).text()));
    delete p.packed;
  }));
  return true;
}

unpack().then(done => {
  state.unpacked = done;
  setup();
  renderNotes();
  renderDivergence();
  drawGraph();
  showStep();
  renderNode();
  renderExplain();
  renderMistakes();
  renderTraining();
  renderModel();
  showTab("node");
});
