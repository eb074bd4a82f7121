// weightreel gallery: fills the page shells from the JSON endpoints. Vanilla JS, no
// dependencies, shipped inside the binary; charts are inline SVG.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

async function api(path) {
  const res = await fetch(path);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

const group = (n) => Number(n).toLocaleString("en-US");
const fixed = (v, d = 4) => (v == null ? "–" : Number(v).toFixed(d));
const bytes = (n) => {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};
const num = (v) => Number(v).toPrecision(4);

// The heat-map ramp the server's PNGs use (viridis anchors), for charts drawn here.
const RAMP = [[68,1,84],[71,45,123],[59,82,139],[44,114,142],[33,145,140],[40,174,128],[94,201,98],[173,220,48],[253,231,37]];
function heat(t) {
  t = Math.min(1, Math.max(0, t)) * 8;
  const k = Math.min(7, Math.floor(t)), f = t - k;
  const c = RAMP[k].map((a, i) => Math.round(a + (RAMP[k + 1][i] - a) * f));
  return `rgb(${c.join(",")})`;
}

function main() { return document.getElementById("main"); }
function fail(e) { main().replaceChildren(el("p", { class: "error", text: String(e.message || e) })); }

// ---------------------------------------------------------------- store page
const COLUMNS = [
  ["id", "#"], ["name", "Model"], ["source", "Source"], ["revision", "Revision"],
  ["params", "Parameters"], ["mode", "Mode"], ["chunk_size", "Chunk"], ["frames", "Frames"],
  ["reel_bytes", "Reel"], ["ratio", "Reel/read"], ["created_at", "Date"],
];

async function storePage() {
  const state = { q: "", sort: "id", order: "asc", page: 0, per: 50 };
  const stats = await api("/api/stats");
  const summary = el("p", { id: "summary", text:
    `${group(stats.encoded_models)} models, ${group(stats.total_parameters)} parameters encoded` });
  const search = el("input", { id: "q", type: "search", placeholder: "Filter by name or source" });
  const table = el("table", { id: "models", class: "data" });
  const pager = el("div", { class: "pager" });
  main().replaceChildren(el("h1", { text: "Store" }), summary, search, table, pager);
  async function load() {
    const p = new URLSearchParams(state);
    const data = await api(`/api/models?${p}`);
    const head = el("tr", {}, ...COLUMNS.map(([key, label]) => el("th", {
      "data-key": key, class: key === state.sort ? `sorted ${state.order}` : "",
      text: label, onclick: () => {
        state.order = state.sort === key && state.order === "asc" ? "desc" : "asc";
        state.sort = key; state.page = 0; load().catch(fail);
      },
    })));
    const rows = data.rows.map((r) => el("tr", { "data-id": r.id },
      el("td", { text: r.id }),
      el("td", {}, el("a", { href: `/model/${r.id}`, text: r.name })),
      el("td", { text: `${r.source_kind}: ${r.source}`, class: "source" }),
      el("td", { text: r.revision || "" }),
      el("td", { class: "num", text: group(r.params) }),
      el("td", { text: r.mode }),
      el("td", { class: "num", text: group(r.chunk_size) }),
      el("td", { class: "num", text: group(r.frames) }),
      el("td", { class: "num", text: bytes(r.reel_bytes) }),
      el("td", { class: "num", text: fixed(r.ratio, 3) }),
      el("td", { text: r.created_at }),
    ));
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
    pager.replaceChildren(
      el("button", { id: "prev", text: "‹ Previous", disabled: state.page === 0 ? "" : null,
        onclick: () => { state.page--; load().catch(fail); } }),
      el("span", { id: "page", text: ` page ${data.page + 1} of ${Math.max(1, data.pages)} (${group(data.total)} models) ` }),
      el("button", { id: "next", text: "Next ›", disabled: data.page + 1 >= data.pages ? "" : null,
        onclick: () => { state.page++; load().catch(fail); } }),
    );
    document.body.dataset.ready = "1";
  }
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.q = search.value; state.page = 0; load().catch(fail); }, 150);
  });
  await load();
}

// ---------------------------------------------------------------- charts
function histogram(g, width = 260, height = 90) {
  const max = Math.max(1, ...g.counts);
  const bw = width / g.counts.length;
  const svg = el("svg:svg", { class: "histogram", width, height: height + 16, viewBox: `0 0 ${width} ${height + 16}` });
  g.counts.forEach((c, i) => {
    const h = (c / max) * height;
    svg.append(el("svg:rect", { x: i * bw, y: height - h, width: Math.max(1, bw - 1), height: h, fill: heat(i / (g.counts.length - 1)) },
      el("svg:title", { text: `${num(g.lo + (i * (g.hi - g.lo)) / g.counts.length)}…: ${c}` })));
  });
  svg.append(el("svg:text", { x: 0, y: height + 13, class: "axis", text: num(g.lo) }));
  svg.append(el("svg:text", { x: width, y: height + 13, class: "axis", "text-anchor": "end", text: num(g.hi) }));
  return svg;
}

function barChart(items, value, label, width = 560, height = 140) {
  const max = Math.max(1e-30, ...items.map(value));
  const bw = width / Math.max(1, items.length);
  const svg = el("svg:svg", { class: "bars", width, height: height + 18, viewBox: `0 0 ${width} ${height + 18}` });
  items.forEach((it, i) => {
    const h = (value(it) / max) * height;
    svg.append(el("svg:rect", { x: i * bw + 1, y: height - h, width: Math.max(1, bw - 2), height: h, fill: heat(value(it) / max) },
      el("svg:title", { text: `${label(it)}: ${num(value(it))}` })));
    svg.append(el("svg:text", { x: i * bw + bw / 2, y: height + 13, class: "axis", "text-anchor": "middle", text: label(it) }));
  });
  return svg;
}

function colourBar(min, max, scale) {
  const svg = el("svg:svg", { id: "colourbar", width: 300, height: 34, viewBox: "0 0 300 34" });
  const grad = el("svg:linearGradient", { id: "ramp" });
  RAMP.forEach((c, i) => grad.append(el("svg:stop", { offset: `${(i / 8) * 100}%`, "stop-color": `rgb(${c.join(",")})` })));
  svg.append(el("svg:defs", {}, grad), el("svg:rect", { x: 0, y: 0, width: 300, height: 16, fill: "url(#ramp)" }));
  const lo = scale === "tensor" ? "each tensor's min" : num(min);
  const hi = scale === "tensor" ? "its max" : num(max);
  svg.append(el("svg:text", { x: 0, y: 30, class: "axis", text: lo }));
  svg.append(el("svg:text", { x: 300, y: 30, class: "axis", "text-anchor": "end", text: hi }));
  return svg;
}

// ---------------------------------------------------------------- model page
async function modelPage() {
  const id = document.body.dataset.id;
  const m = await api(`/api/model/${id}`);
  const e = m.entry;
  const facts = el("dl", { class: "facts" });
  for (const [k, v] of [
    ["Source", `${e.source_kind}: ${e.source}`], ["Revision", e.revision || "–"],
    ["Parameters", group(e.totals.params)], ["Mode", e.settings.mode],
    ["Chunk", group(e.settings.chunk_size)], ["Frames", group(e.totals.frames)],
    ["Reel", bytes(e.totals.reel_bytes)], ["Encoded", e.created_at],
  ]) facts.append(el("dt", { text: k }), el("dd", { text: v }));

  const roleCharts = el("div", { class: "charts", id: "role-charts" }, ...m.roles.map((g) =>
    el("figure", { class: "chart" }, histogram(g),
      el("figcaption", { text: `${g.key}: ${g.tensors} tensors, ${group(g.params)} params, mean ${num(g.mean)}, std ${num(g.std)}` }))));
  const layerLabel = (g) => (g.key == null ? "–" : String(g.key));
  const layerChart = m.layers.length
    ? el("figure", { class: "chart", id: "layer-chart" }, barChart(m.layers, (g) => g.std, layerLabel),
        el("figcaption", { text: "Standard deviation of the sampled values per layer (– : outside numbered layers)" }))
    : null;
  const layerCharts = el("div", { class: "charts", id: "layer-histograms" }, ...m.layers.map((g) =>
    el("figure", { class: "chart small" }, histogram(g, 180, 60),
      el("figcaption", { text: `layer ${layerLabel(g)}: mean ${num(g.mean)}, std ${num(g.std)}` }))));

  // Frame viewer.
  const frameSel = el("select", { id: "frame" }, ...m.frames.map((f) =>
    el("option", { value: f.index, text: `frame ${f.index} (${f.width}×${f.height}, ${group(f.count)} values)` })));
  const tensorSel = el("select", { id: "tensor" }, el("option", { value: "", text: "— jump to a tensor —" }),
    ...m.tensors.filter((t) => t.first_frame != null).map((t) => el("option", { value: t.first_frame, text: t.name })));
  const scaleSel = el("select", { id: "scale" }, el("option", { value: "frame", text: "one scale for the frame" }),
    el("option", { value: "tensor", text: "one scale per tensor" }));
  const outline = el("input", { id: "outline", type: "checkbox", checked: "" });
  const img = el("img", { id: "frame-image", alt: "frame" });
  const labels = el("div", { class: "labels" });
  const tooltip = el("div", { id: "tooltip", class: "tooltip", hidden: "" });
  const viewer = el("div", { class: "viewer" }, img, labels, tooltip);
  const bar = el("div", { id: "bar" });
  const legend = el("table", { id: "legend", class: "data" });
  let current = null;
  async function show() {
    const k = frameSel.value, q = `scale=${scaleSel.value}&outline=${outline.checked ? 1 : 0}`;
    const info = await api(`/api/model/${id}/frame/${k}?${q}`);
    current = { k, q, info };
    img.dataset.loaded = "";
    img.onload = () => { placeLabels(); img.dataset.loaded = "1"; };
    img.src = `/api/model/${id}/frame/${k}.png?${q}`;
    const zoom = Math.max(1, Math.floor(640 / Math.max(info.width, info.height)));
    img.style.width = `${info.width * zoom}px`;
    bar.replaceChildren(colourBar(info.min, info.max, info.scale),
      el("span", { class: "key padding", text: "padding" }), el("span", { class: "key nonfinite", text: "NaN/inf" }),
      el("span", { class: "key outline", text: "tensor boundary" }));
    // One label per tensor, at its largest run, for tensors holding at least 1/40 of the frame.
    const byTensor = new Map();
    for (const r of info.regions) {
      const t = byTensor.get(r.tensor) || { total: 0, best: r };
      t.total += r.len;
      if (r.len > t.best.len) t.best = r;
      byTensor.set(r.tensor, t);
    }
    const labelled = [...byTensor.values()].filter((t) => t.total * 40 >= info.count).map((t) => t.best);
    labelled.sort((a, b) => byTensor.get(b.tensor).total - byTensor.get(a.tensor).total);
    labels.replaceChildren(...labelled.map((r) =>
      el("span", { class: "label", text: r.name, "data-names": shortNames(r.name).join("\n"),
        style: `left:${(r.centre[0] / info.width) * 100}%;top:${(r.centre[1] / info.height) * 100}%` })));
    if (img.complete && img.naturalWidth) placeLabels();
    legend.replaceChildren(el("tr", {}, ...["Tensor", "Elements", "Curve", "Min", "Max"].map((h) => el("th", { text: h }))),
      ...info.regions.map((r) => el("tr", {}, el("td", { text: r.name }),
        el("td", { class: "num", text: `${group(r.start)}–${group(r.start + r.len - 1)}` }),
        el("td", { class: "num", text: group(r.curve_start) }),
        el("td", { class: "num", text: num(r.min) }), el("td", { class: "num", text: num(r.max) }))));
  }
  // Labels never overlap: largest tensor first, each tries its shorter names, and one that
  // still collides with a label already shown is hidden.
  function placeLabels() {
    const shown = [];
    for (const span of labels.children) {
      span.hidden = false;
      let placed = false;
      for (const text of span.dataset.names.split("\n")) {
        span.textContent = text;
        const r = span.getBoundingClientRect();
        if (!shown.some((p) => r.left < p.right && p.left < r.right && r.top < p.bottom && p.top < r.bottom)) {
          shown.push(r); placed = true; break;
        }
      }
      if (!placed) span.hidden = true;
    }
  }
  let pending = null, inflight = false;
  async function hover(ev) {
    if (!current || !img.naturalWidth) return;
    const rect = img.getBoundingClientRect();
    const x = Math.floor(((ev.clientX - rect.left) / rect.width) * img.naturalWidth);
    const y = Math.floor(((ev.clientY - rect.top) / rect.height) * img.naturalHeight);
    if (x < 0 || y < 0 || x >= img.naturalWidth || y >= img.naturalHeight) { tooltip.hidden = true; return; }
    pending = { x, y, cx: ev.clientX - rect.left, cy: ev.clientY - rect.top };
    if (inflight) return;
    inflight = true;
    while (pending) {
      const p = pending; pending = null;
      try {
        const at = await api(`/api/model/${id}/frame/${current.k}/at?x=${p.x}&y=${p.y}&${current.q}`);
        tooltip.textContent = at.padding ? `(${p.x}, ${p.y}) padding`
          : `${at.tensor} [${at.index.join(", ")}] = ${at.value_text ?? "?"} (element ${group(at.element)}) at (${p.x}, ${p.y})`;
        tooltip.dataset.value = at.value_text ?? "";
        tooltip.dataset.tensor = at.tensor || "";
        tooltip.style.left = `${p.cx + 12}px`; tooltip.style.top = `${p.cy + 12}px`;
        tooltip.hidden = false;
      } catch (e) { tooltip.textContent = e.message; }
    }
    inflight = false;
  }
  img.addEventListener("mousemove", hover);
  img.addEventListener("mouseleave", () => { tooltip.hidden = true; });
  for (const c of [frameSel, scaleSel, outline]) c.addEventListener("change", () => show().catch(fail));
  tensorSel.addEventListener("change", () => { if (tensorSel.value !== "") { frameSel.value = tensorSel.value; show().catch(fail); } });

  // The reel as the H.264 video `encode --preview` writes, made by the server on request.
  const previewBox = el("div", { id: "preview-box" });
  const previewButton = el("button", { id: "show-preview", text: "Show the H.264 preview",
    onclick: async () => {
      const g = await api(`/api/model/${id}/preview`);
      previewBox.replaceChildren(
        el("video", { id: "preview", controls: "", muted: "", loop: "", preload: "auto",
          src: `/api/model/${id}/preview.mp4`, style: `max-width:100%;width:${Math.min(g.width * Math.max(1, Math.floor(640 / Math.max(g.width, g.height))), 960)}px` }),
        el("p", { class: "note", id: "preview-note", text: g.describe }));
    } });
  previewBox.append(previewButton);

  const tensors = el("table", { id: "tensors", class: "data" },
    el("tr", {}, ...["Tensor", "Role", "Layer", "Shape", "Dtype", "Values stored", "First frame"].map((h) => el("th", { text: h }))),
    ...m.tensors.map((t) => el("tr", {}, el("td", { text: t.name }), el("td", { text: t.role }),
      el("td", { text: t.layer ?? "–" }), el("td", { text: t.shape.join("×") }),
      el("td", { text: t.source_type ? `${t.dtype} (from ${t.source_type})` : t.dtype }),
      el("td", { class: "num", text: group(t.selected) }), el("td", { class: "num", text: t.first_frame ?? "–" }))));

  main().replaceChildren(
    el("h1", { text: e.name }), facts,
    el("h2", { text: "Frames" }),
    el("div", { class: "controls" }, frameSel, tensorSel, scaleSel, el("label", {}, outline, " outline tensors")),
    viewer, bar, legend,
    el("h2", { text: "Preview" }), previewBox,
    el("h2", { text: "Statistics per role" }), el("p", { class: "note", text: `From ${m.statistics_from}.` }), roleCharts,
    el("h2", { text: "Statistics per layer" }), layerChart, layerCharts,
    el("h2", { text: `Tensors (${m.tensors.length})` }), tensors,
  );
  if (m.frames.length) await show();
  document.body.dataset.ready = "1";
}

// ---------------------------------------------------------------- compare page
async function namesList() {
  const list = await api("/api/list");
  const names = [...new Set(list.map((e) => e.name))];
  return el("datalist", { id: "names" }, ...names.map((n) => el("option", { value: n })));
}

async function comparePage() {
  const { a, b } = document.body.dataset;
  const form = el("form", { method: "get", action: "/compare", class: "controls" },
    el("input", { name: "a", value: a, list: "names", placeholder: "model A" }),
    el("input", { name: "b", value: b, list: "names", placeholder: "model B" }),
    el("button", { text: "Compare" }), await namesList());
  main().replaceChildren(el("h1", { text: "Compare" }), form);
  if (!a || !b) { document.body.dataset.ready = "1"; return; }
  const c = await api(`/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
  const grid = c.layers;
  const heat = el("table", { id: "heatmap", class: "heatmap" },
    el("tr", {}, el("th", { text: "layer" }), ...grid.roles.map((r) => el("th", { text: r }))),
    ...grid.layers.map((l, i) => el("tr", {}, el("th", { text: l == null ? "–" : l }),
      ...grid.cells[i].map((v, j) => el("td", {
        class: v == null ? "cell empty" : "cell", "data-layer": l == null ? "" : l, "data-role": grid.roles[j],
        style: v == null ? "" : `background:${heatColour((v + 1) / 2)}`,
        title: v == null ? "nothing paired" : `layer ${l ?? "–"}, ${grid.roles[j]}: correlation ${fixed(v)}`,
        text: v == null ? "" : fixed(v, 2),
      })))));
  const table = el("table", { id: "changes", class: "data" },
    el("tr", {}, ...["Tensor (A)", "Tensor (B)", "Role", "Layer", "Shape", "Paired by", "Similarity", "Relative change"].map((h) => el("th", { text: h }))),
    ...c.tensors.map((m) => el("tr", {}, el("td", { text: m.tensor }), el("td", { text: m.other }), el("td", { text: m.role }),
      el("td", { text: m.layer ?? "–" }), el("td", { text: m.shape.join("×") }), el("td", { text: m.paired_by }),
      el("td", { class: "num", text: fixed(m.similarity) }), el("td", { class: "num", text: fixed(m.relative_change) }))));
  main().append(
    el("p", { id: "scores", text: `hybrid ${fixed(c.hybrid)} · exact ${fixed(c.exact)} · coverage ${fixed(c.coverage)} · features ${fixed(c.features)} · ${c.tensors.length} tensors paired` }),
    el("h2", { text: "Per-layer similarity (correlation of paired tensors)" }), heat,
    el("h2", { text: "Per-tensor change, largest first" }), table);
  document.body.dataset.ready = "1";
}
function heatColour(t) { return heat(t); }

// ---------------------------------------------------------------- search page
async function searchPage() {
  const { q } = document.body.dataset;
  const form = el("form", { method: "get", action: "/search", class: "controls" },
    el("input", { name: "q", id: "query", value: q, list: "names", placeholder: "a stored model" }),
    el("button", { text: "Search" }), await namesList());
  main().replaceChildren(el("h1", { text: "Search" }), form);
  if (q) {
    const r = await api(`/api/search?q=${encodeURIComponent(q)}`);
    main().append(el("table", { id: "results", class: "data" },
      el("tr", {}, ...["Rank", "Model", "Score", "Exact", "Features", "Basis", ""].map((h) => el("th", { text: h }))),
      ...r.hits.map((h, i) => el("tr", {}, el("td", { text: i + 1 }), el("td", { text: h.name }),
        el("td", { class: "num", text: fixed(h.score) }), el("td", { class: "num", text: fixed(h.exact) }),
        el("td", { class: "num", text: fixed(h.features) }), el("td", { text: h.basis }),
        el("td", {}, el("a", { href: `/compare?a=${encodeURIComponent(q)}&b=${encodeURIComponent(h.name)}`, text: "compare" }))))),
      el("p", { class: "note", text: `${r.searched} fingerprints searched (${r.method}).` }));
  }
  document.body.dataset.ready = "1";
}

// ---------------------------------------------------------------- families page
async function familiesPage() {
  // The trees are computed in the background from the server's start; one page of families
  // is drawn at a time.
  const state = { page: 0 };
  const status = el("p", { id: "families-status" });
  const list = el("div", { id: "families" });
  const pager = el("div", { class: "pager" });
  const unrelated = el("div", {});
  main().replaceChildren(el("h1", { text: "Families" }), status, pager, list, unrelated);
  let data;
  for (;;) {
    data = await api(`/api/families/page?page=${state.page}&per=20`);
    if (!data.computing) break;
    status.textContent = `Comparing models: ${group(data.pairs_done)} of ${group(data.pairs)} pairs…`;
    await new Promise((r) => setTimeout(r, 200));
  }
  async function load() {
    data = await api(`/api/families/page?page=${state.page}&per=20`);
    draw();
  }
  function draw() {
    status.textContent = `${group(data.related)} families of related models, ${group(data.unrelated.length)} unrelated models.`;
    list.replaceChildren(...data.families.map(familyGraph));
    pager.replaceChildren(
      el("button", { id: "prev", text: "‹ Previous", disabled: state.page === 0 ? "" : null,
        onclick: () => { state.page--; load().catch(fail); } }),
      el("span", { id: "page", text: ` page ${data.page + 1} of ${Math.max(1, data.pages)} ` }),
      el("button", { id: "next", text: "Next ›", disabled: data.page + 1 >= data.pages ? "" : null,
        onclick: () => { state.page++; load().catch(fail); } }));
    unrelated.replaceChildren(...(data.unrelated.length
      ? [el("h2", { text: "Unrelated" }), el("p", { text: data.unrelated.join(", ") })] : []));
    document.body.dataset.ready = "1";
  }
  draw();
}

// Names for a label, longest first (as the CLI's legend): the name, then without a trailing
// ".weight" its last parts after the layer number, led by "L<layer> ".
function shortNames(name) {
  const out = [name];
  const core = name.endsWith(".weight") ? name.slice(0, -7) : name;
  const parts = core.split(".");
  const layer = parts.findIndex((p) => /^[0-9]+$/.test(p));
  const lead = layer >= 0 ? `L${parts[layer]} ` : "";
  for (let k = layer + 1; k < parts.length; k++) {
    const text = lead + parts.slice(k).join(".");
    if (!out.includes(text)) out.push(text);
  }
  return out;
}

function familyGraph(f) {
  const depth = { [f.root]: 0 };
  for (const e of f.edges) depth[e.child] = depth[e.parent] + 1;
  const rows = {};
  for (const m of f.members) (rows[depth[m] ?? 0] ||= []).push(m);
  const pos = {};
  const levels = Object.keys(rows).length;
  const width = Math.max(...Object.values(rows).map((r) => r.length)) * 220;
  Object.entries(rows).forEach(([d, ms]) => ms.forEach((m, i) => { pos[m] = [((i + 0.5) * width) / ms.length, 30 + d * 80]; }));
  const svg = el("svg:svg", { class: "family", width, height: levels * 80, viewBox: `0 0 ${width} ${levels * 80}` });
  for (const e of f.edges) {
    const [x1, y1] = pos[e.parent], [x2, y2] = pos[e.child];
    svg.append(el("svg:line", { x1, y1, x2, y2, class: "edge" }, el("svg:title", { text: `${e.parent} → ${e.child}: score ${fixed(e.score)}, change ${fixed(e.relative_change)}` })));
    svg.append(el("svg:text", { x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2, class: "axis", text: fixed(e.score, 2) }));
  }
  for (const m of f.members) {
    const [x, y] = pos[m];
    svg.append(el("svg:circle", { cx: x, cy: y, r: 6, class: m === f.root ? "node root" : "node" }));
    svg.append(el("svg:text", { x, y: y - 10, "text-anchor": "middle", class: "name", text: m }));
  }
  return el("div", {}, el("h2", { text: f.root }), svg);
}

// ---------------------------------------------------------------- queue page

// The job queue's progress, read again every two seconds while the page is open.
async function queuePage() {
  async function draw() {
    const s = await api("/api/queue");
    const counts = el("table", { id: "queue-counts", class: "data" },
      el("tr", {}, ...["Queued", "Running", "Done", "Parked", "Done per minute (5 min)"].map((h) => el("th", { text: h }))),
      el("tr", {},
        el("td", { id: "queued", class: "num", text: group(s.queued) }),
        el("td", { id: "running", class: "num", text: group(s.running) }),
        el("td", { id: "done", class: "num", text: group(s.done) }),
        el("td", { id: "parked", class: "num", text: group(s.parked) }),
        el("td", { class: "num", text: fixed(s.done_per_minute, 1) })));
    const running = el("table", { id: "running-jobs", class: "data" },
      el("tr", {}, ...["Job", "Model", "Worker", "Try"].map((h) => el("th", { text: h }))),
      ...s.running_jobs.map((j) => el("tr", {}, el("td", { text: `#${j.id}` }), el("td", { text: j.model }),
        el("td", { text: j.worker }), el("td", { class: "num", text: j.attempt }))));
    const parked = el("table", { id: "parked-jobs", class: "data" },
      el("tr", {}, ...["Job", "Model", "Tries", "Error"].map((h) => el("th", { text: h }))),
      ...s.parked_jobs.map((j) => el("tr", {}, el("td", { text: `#${j.id}` }), el("td", { text: j.model }),
        el("td", { class: "num", text: j.attempts }), el("td", { text: j.error }))));
    main().replaceChildren(el("h1", { text: "Queue" }), counts,
      el("h2", { text: "Running" }), running, el("h2", { text: "Parked" }), parked);
    document.body.dataset.ready = "1";
  }
  await draw();
  setInterval(() => draw().catch(fail), 2000);
}

const PAGES = { store: storePage, model: modelPage, compare: comparePage, search: searchPage, families: familiesPage, queue: queuePage };
document.addEventListener("DOMContentLoaded", () => {
  (PAGES[document.body.dataset.page] || storePage)().catch((e) => { fail(e); document.body.dataset.ready = "error"; });
});
