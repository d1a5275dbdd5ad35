// Neighbour browser: renders window.CAVE_BROWSE (assets/data.js). Plain DOM, no libraries.
"use strict";

(function () {
  const D = window.CAVE_BROWSE;
  if (!D) {
    document.getElementById("title").textContent = "assets/data.js is missing";
    return;
  }
  const meta = D.meta, S = D.summary, ROWS = D.rows, K = meta.k, SIZES = meta.sizes;
  const LAST = SIZES.length - 1;
  const RELATION = { i: ["rel-i", "same image"], c: ["rel-c", "same caption"], o: ["rel-o", "other item"] };
  const SVG = "http://www.w3.org/2000/svg";

  // ------------------------------------------------------------------ helpers

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value == null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "data") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    for (const child of children || []) if (child != null) node.append(child);
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text != null) node.textContent = text;
    return node;
  }
  const num = (x) => Number(x).toLocaleString("en-US");
  const short = (n) => n >= 1e6 ? +(n / 1048576).toFixed(1) + "M" : n >= 1024 ? Math.round(n / 1024) + "K" : String(n);
  function score(x) {
    if (x == null) return "n/a";
    const a = Math.abs(x);
    if (a === 0) return "0";
    return a !== 0 && a < 0.001 ? x.toExponential(2) : x.toFixed(a < 0.1 ? 4 : 3);
  }
  const chance = (n) => K / (n - 1);
  // Overlaps are expectations under random tie-breaking: whole numbers unless a tie
  // reaches past a list; shown with at most two decimals.
  const ov = (x) => String(+Number(x).toFixed(2));
  const prob = (p) => Number(p).toFixed(2);
  function classColors(label) {
    const hue = Math.round((label * 137.508) % 360);
    return { background: `hsl(${hue} 65% 91%)`, color: `hsl(${hue} 55% 30%)` };
  }
  function classChip(info) {
    if (info.label == null) return null;
    const chip = el("span", { class: "chip", text: info.label_name || "class " + info.label, title: "class" });
    Object.assign(chip.style, classColors(info.label));
    return chip;
  }
  function picture(info, cls, prefer) {
    const src = prefer === "big" ? (info.big || info.thumb || info.mini) : (info.thumb || info.mini);
    if (src) return el("img", { src, alt: info.id, class: cls, loading: "lazy", decoding: "async" });
    return el("div", { class: "noimg " + (cls || ""), text: info.note ? "no image" : "" });
  }
  const hasThumbs = meta.thumbnails;

  // ------------------------------------------------------------------ header and summary

  document.getElementById("title").textContent = meta.title || "Neighbour browser";
  document.title = meta.title || "Neighbour browser";
  document.getElementById("subtitle").textContent =
    `${meta.source} · N = ${num(meta.n)} paired rows · k = ${K}` + (meta.pairing ? ` · pairing: ${meta.pairing}` : "");
  const sides = document.getElementById("sides");
  sides.append(el("span", { class: "side-tag a", title: meta.side_a }, [el("b", { text: "A" }), meta.side_a]),
               el("span", { class: "side-tag b", title: meta.side_b }, [el("b", { text: "B" }), meta.side_b]));

  function card(label, value, sub, cls) {
    return el("div", { class: "card " + (cls || "") }, [
      el("div", { class: "label", text: label }), el("div", { class: "value", text: value }),
      sub ? el("div", { class: "sub", text: sub }) : null]);
  }
  const stats = document.getElementById("stats");
  const pct = Math.round(100 * S.confidence);
  stats.append(
    card("mutual k-NN", score(S.score), `${pct}% CI [${score(S.ci_low)}, ${score(S.ci_high)}]`),
    card("chance k/(N-1)", score(S.chance), `N = ${num(meta.n)}, k = ${K}`),
    S.null ? card("permutation null", score(S.null.null_mean), `± ${score(S.null.null_std)} · p = ${S.null.p_value.toPrecision(2)} (${S.null.n_perm} shuffles)`)
           : card("permutation null", "n/a", "not computed"),
    card("score − null", S.null ? score(S.null.calibrated) : "n/a", S.null ? `${(S.score / Math.max(S.chance, 1e-12)).toFixed(1)}× chance` : null),
    card("candidates scored", num(S.candidates), S.candidates === meta.n ? "every row" : `${num(S.units_drawn)} of ${num(S.units_total)} units, drawn at random`),
    card("queries shown", num(D.queries.length), "spread over the overlap distribution"));

  function drawHistogram(selected) {
    const box = document.getElementById("hist");
    box.replaceChildren();
    const w = 360, h = 150, left = 34, bottom = 20, top = 8;
    box.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const total = S.histogram.reduce((a, b) => a + b, 0) || 1;
    const shares = S.histogram.map((c) => c / total);
    const peak = Math.max(...shares, 1e-9);
    const slot = (w - left - 6) / shares.length;
    box.append(svg("line", { x1: left, x2: w - 4, y1: h - bottom, y2: h - bottom, class: "axis" }));
    for (const frac of [0, 0.5, 1]) {
      const y = h - bottom - frac * (h - bottom - top);
      box.append(svg("text", { x: left - 4, y: y + 3, "text-anchor": "end" }, (100 * frac * peak).toFixed(0) + "%"));
    }
    shares.forEach((share, o) => {
      const bh = share / peak * (h - bottom - top);
      const bar = svg("rect", { x: left + o * slot + 1, y: h - bottom - bh, width: Math.max(slot - 2, 1), height: bh,
                                class: "bar" + (o === selected ? " selected" : "") });
      bar.append(svg("title", {}, `overlap ${o}/${K}: ${ov(S.histogram[o])} rows (${(100 * share).toFixed(1)}%)`));
      box.append(bar);
      box.append(svg("text", { x: left + (o + 0.5) * slot, y: h - 6, "text-anchor": "middle" }, String(o)));
    });
  }
  const tiedHistogram = S.histogram.some((c) => !Number.isInteger(c));
  document.getElementById("hist-caption").textContent =
    `Per-row overlap |A ∩ B| of ${num(S.candidates)} rows, whole pool (k = ${K})` +
    (tiedHistogram ? "; expected counts under random tie-breaking" : "");

  function drawCurve() {
    const box = document.getElementById("curve");
    const w = 360, h = 150, left = 44, right = 10, bottom = 20, top = 8;
    box.setAttribute("viewBox", `0 0 ${w} ${h}`);
    const curve = S.curve;
    const high = Math.max(...curve.map((c) => Math.max(c.ci_high, c.chance)), S.null ? S.null.null_mean : 0) * 1.1 || 1;
    const lx = curve.map((c) => Math.log2(c.n));
    const x0 = Math.min(...lx), x1 = Math.max(...lx);
    const X = (v) => x1 === x0 ? (left + w - right) / 2 : left + (v - x0) / (x1 - x0) * (w - left - right);
    const Y = (v) => h - bottom - v / high * (h - bottom - top);
    box.append(svg("line", { x1: left, x2: w - right, y1: h - bottom, y2: h - bottom, class: "axis" }));
    for (const frac of [0, 0.5, 1]) {
      box.append(svg("text", { x: left - 4, y: Y(frac * high) + 3, "text-anchor": "end" }, score(frac * high)));
    }
    const band = curve.map((c, i) => `${X(lx[i])},${Y(c.ci_high)}`).concat(
      curve.map((c, i) => `${X(lx[i])},${Y(c.ci_low)}`).reverse());
    box.append(svg("polygon", { points: band.join(" "), class: "band" }));
    box.append(svg("polyline", { points: curve.map((c, i) => `${X(lx[i])},${Y(c.chance)}`).join(" "), class: "chance-line" }));
    box.append(svg("polyline", { points: curve.map((c, i) => `${X(lx[i])},${Y(c.score)}`).join(" "), class: "score-line" }));
    curve.forEach((c, i) => {
      box.append(svg("line", { x1: X(lx[i]), x2: X(lx[i]), y1: Y(c.ci_low), y2: Y(c.ci_high), class: "ci" }));
      const dot = svg("circle", { cx: X(lx[i]), cy: Y(c.score), r: 3, class: "dot" });
      dot.append(svg("title", {}, `N = ${num(c.n)}: ${score(c.score)} [${score(c.ci_low)}, ${score(c.ci_high)}], chance ${score(c.chance)}`));
      box.append(dot);
      box.append(svg("text", { x: X(lx[i]), y: h - 6, "text-anchor": "middle" }, short(c.n)));
    });
  }
  document.getElementById("curve-caption").textContent =
    `Score vs gallery size N (same ${num(S.candidates)} rows; dashed: chance)`;
  drawHistogram(-1);
  drawCurve();

  // ------------------------------------------------------------------ query list

  const items = D.queries.map((q, order) => {
    const info = ROWS[q.row];
    const text = [info.id, info.label_name || "", ...(info.captions || [info.caption || ""])].join(" ").toLowerCase();
    return { q, order, info, overlap: q.overlap[LAST], text };
  });
  const state = { key: "order", dir: 1, selected: null, tab: "neighbours", visible: [] };

  const ovMin = document.getElementById("overlap-min"), ovMax = document.getElementById("overlap-max");
  for (let o = 0; o <= K; o++) {
    ovMin.append(el("option", { value: o, text: String(o) }));
    ovMax.append(el("option", { value: o, text: String(o) }));
  }
  ovMax.value = String(K);
  const classFilter = document.getElementById("class-filter");
  const labels = new Map();
  for (const it of items) if (it.info.label != null) labels.set(it.info.label, it.info.label_name || "class " + it.info.label);
  classFilter.append(el("option", { value: "", text: labels.size ? "all classes" : "no classes" }));
  [...labels.entries()].sort((a, b) => a[0] - b[0]).forEach(([value, name]) =>
    classFilter.append(el("option", { value, text: name })));
  classFilter.disabled = labels.size === 0;

  function compare(a, b) {
    let x, y;
    if (state.key === "id") { x = a.info.id; y = b.info.id; }
    else if (state.key === "label") { x = a.info.label == null ? -1 : a.info.label; y = b.info.label == null ? -1 : b.info.label; }
    else if (state.key === "overlap") { x = a.overlap; y = b.overlap; }
    else { x = a.order; y = b.order; }
    if (x < y) return -state.dir;
    if (x > y) return state.dir;
    return a.order - b.order;
  }

  function listRow(it) {
    const ovCell = el("div", { class: "ov" }, [
      el("span", { text: `${ov(it.overlap)}/${K}` }),
      el("div", { class: "track" }, [el("div", { class: "fill", style: `width:${100 * it.overlap / K}%` })])]);
    const caption = it.info.caption || (it.info.captions || [])[0];
    const cell = el("div", { class: "q-cell" }, [
      hasThumbs ? picture(it.info, "") : null,
      el("div", { class: "q-text" }, [el("div", { class: "q-id", text: it.info.id, title: it.info.id }),
                                      caption ? el("div", { class: "q-cap", text: caption, title: caption }) : null])]);
    return el("tr", { data: { row: it.q.row, order: it.order, overlap: it.overlap } }, [
      el("td", { class: "num", text: String(it.order + 1) }), el("td", {}, [cell]),
      el("td", {}, [classChip(it.info)]), el("td", {}, [ovCell])]);
  }

  function renderList() {
    const terms = document.getElementById("search").value.toLowerCase().split(/\s+/).filter(Boolean);
    const lo = +ovMin.value, hi = +ovMax.value, cls = classFilter.value;
    state.visible = items.filter((it) => it.overlap >= lo && it.overlap <= hi &&
      (cls === "" || String(it.info.label) === cls) && terms.every((t) => it.text.includes(t)));
    state.visible.sort(compare);
    const body = document.querySelector("#queries tbody");
    body.replaceChildren(...state.visible.map(listRow));
    document.querySelectorAll("#queries th").forEach((th) =>
      th.setAttribute("aria-sort", th.dataset.key === state.key ? (state.dir > 0 ? "ascending" : "descending") : "none"));
    document.getElementById("count").textContent = `${state.visible.length} of ${items.length} queries`;
    markSelected();
  }

  function markSelected() {
    document.querySelectorAll("#queries tbody tr").forEach((tr) =>
      tr.classList.toggle("selected", state.selected != null && +tr.dataset.order === state.selected.order));
  }

  function revealSelected() {  // scrolls the list (not the page) to the selected row
    const tr = document.querySelector("#queries tbody tr.selected");
    const box = document.getElementById("list-scroll");
    if (!tr) return;
    const top = tr.offsetTop, bottom = top + tr.offsetHeight;
    if (top < box.scrollTop + 30 || bottom > box.scrollTop + box.clientHeight) {
      box.scrollTop = top - 3 * tr.offsetHeight;
    }
  }

  document.querySelectorAll("#queries th").forEach((th) => th.addEventListener("click", () => {
    if (state.key === th.dataset.key) state.dir = -state.dir;
    else { state.key = th.dataset.key; state.dir = th.dataset.key === "overlap" ? -1 : 1; }
    renderList();
  }));
  document.getElementById("search").addEventListener("input", renderList);
  for (const id of ["overlap-min", "overlap-max", "class-filter"]) {
    document.getElementById(id).addEventListener("change", renderList);
  }
  document.querySelector("#queries tbody").addEventListener("click", (event) => {
    const tr = event.target.closest("tr");
    if (tr) select(items[+tr.dataset.order]);
  });
  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, select") || !["ArrowDown", "ArrowUp"].includes(event.key)) return;
    const at = state.visible.indexOf(state.selected);
    const next = state.visible[Math.min(Math.max(at + (event.key === "ArrowDown" ? 1 : -1), 0), state.visible.length - 1)];
    if (next) { select(next); revealSelected(); event.preventDefault(); }
  });

  // ------------------------------------------------------------------ query view

  function queryHead(it) {
    const info = it.info, q = it.q;
    const captions = info.captions || (info.caption ? [info.caption] : []);
    const list = captions.length ? el("ol", { class: "qh-captions" }, captions.map((c, i) =>
      el("li", { class: i === info.caption_index ? "embedded" : null, text: c }))) : null;
    const stat = (label, value) => el("div", { class: "qh-stat" }, [el("div", { class: "label", text: label }), el("div", { class: "value", text: value })]);
    const sameA = sameClass(info, q.a[LAST]), sameB = sameClass(info, q.b[LAST]);
    return [
      hasThumbs ? picture(info, "big", "big") : null,
      el("div", { class: "qh-main" }, [
        el("div", { class: "qh-title" }, [el("h2", { text: info.id }), classChip(info),
          el("span", { class: "qh-rank", text: `#${it.order + 1} of ${items.length} by overlap` })]),
        list,
        el("div", { class: "qh-stats" }, [
          stat("overlap |A ∩ B|", `${ov(it.overlap)} / ${K}`),
          stat("row score", (it.overlap / K).toFixed(2)),
          stat("chance", score(chance(meta.n))),
          sameA != null ? stat("same class in A / B", `${sameA} / ${sameB}`) : null,
          stat("pool row", String(q.row))]),
        info.note ? el("div", { class: "note", text: info.note }) : null])];
  }

  function sameClass(info, list) {
    if (info.label == null) return null;
    return list.filter((r) => ROWS[r].label === info.label).length;
  }

  function legend() {
    const box = document.getElementById("legend");
    const entry = (cls, text, color) => el("span", {}, [el("span", { class: "swatch " + cls, style: `background:${color}` }), text]);
    box.replaceChildren(entry("", "shared by A and B", "var(--shared-soft);border:1px solid #9fd9b4"),
                        entry("", "tied on the other side: shared with probability p", "var(--maybe-soft);border:1px dashed #9fd9b4"));
    if (meta.markers) {
      box.append(el("span", { class: "tag rel-i", text: "same image" }), el("span", { class: "tag rel-c", text: "same caption" }),
                 el("span", { class: "tag rel-o", text: "other item" }));
    }
    box.append(el("span", { text: "cos: cosine similarity to the query; the lists break ties by the smaller row, " +
                                 "overlaps are expected values under random tie-breaking on each side" }));
  }

  // How the other side lists a shown neighbour: 1 in its list under every tie-breaking,
  // between 0 and 1 tied with its k-th score, 0 never (data "xa"/"xb"); "pa"/"pb": the
  // same for the neighbour's own side.
  const otherP = (q, side, s, rank) => q["x" + side][s][rank];
  const ownP = (q, side, s, rank) => q["p" + side][s][rank];
  const sharedClass = (p) => p === 1 ? " shared" : p > 0 ? " maybe" : "";

  function neighbourItem(q, side, rank, otherRank) {
    const row = q[side][LAST][rank], info = ROWS[row], query = ROWS[q.row];
    const code = meta.markers ? q["r" + side][LAST][rank] : null;
    const tags = [], other = side === "a" ? "B" : "A", p = otherP(q, side, LAST, rank), own = ownP(q, side, LAST, rank);
    if (p === 1) tags.push(el("span", { class: "tag shared", text: `shared · ${other} #${otherRank + 1}` }));
    else if (p > 0) tags.push(el("span", { class: "tag shared maybe", text: `${other} lists it with p = ${prob(p)} (tie)` }));
    if (own < 1) tags.push(el("span", { class: "tag tied", text: `tied at the k-th: listed with p = ${prob(own)}` }));
    if (code) tags.push(el("span", { class: "tag " + RELATION[code][0], text: RELATION[code][1] }));
    if (query.label != null && info.label === query.label) tags.push(el("span", { class: "tag same-class", text: "same class" }));
    return el("div", { class: "nb" + sharedClass(p) + (hasThumbs ? "" : " no-thumb"),
                       data: { row, rank: rank + 1, relation: code || "" } }, [
      el("div", { class: "rank", text: String(rank + 1) }),
      hasThumbs ? picture(info, "") : null,
      el("div", { class: "nb-body" }, [
        el("div", { class: "nb-top" }, [el("span", { class: "nb-id", text: info.id }), classChip(info)]),
        info.caption ? el("div", { class: "nb-cap", text: info.caption }) : null,
        el("div", { class: "nb-top nb-meta" }, [el("span", { text: `cos ${q["s" + side][LAST][rank].toFixed(4)} · row ${row}` }), ...tags])])]);
  }

  function renderNeighbours(it) {
    const q = it.q, a = q.a[LAST], b = q.b[LAST];
    const column = (side, list, other) => el("div", { class: "col col-" + side }, [
      el("h3", {}, [el("span", { text: `${side.toUpperCase()} · ${K} nearest` }),
                    el("span", { class: "what", text: side === "a" ? meta.side_a : meta.side_b, title: side === "a" ? meta.side_a : meta.side_b })]),
      ...list.map((row, rank) => neighbourItem(q, side, rank, other.indexOf(row)))]);
    document.getElementById("neighbours-view").replaceChildren(
      el("div", { class: "columns" }, [column("a", a, b), column("b", b, a)]));
  }

  function tile(q, side, s, rank) {
    const row = q[side][s][rank], info = ROWS[row];
    const code = meta.markers ? q["r" + side][s][rank] : null;
    const mark = code && code !== "o" ? el("div", { class: "tag " + RELATION[code][0], text: RELATION[code][1] }) : null;
    const p = otherP(q, side, s, rank);
    const odds = p > 0 && p < 1 ? `, ${side === "a" ? "B" : "A"} lists it with p = ${prob(p)} (tie)` : "";
    return el("div", { class: "tile" + sharedClass(p), data: { row, rank: rank + 1, relation: code || "" },
                       title: `${info.id}${info.caption ? " — " + info.caption : ""}\nrank ${rank + 1}, cos ${q["s" + side][s][rank].toFixed(4)}${odds}` }, [
      hasThumbs ? picture(info, "", "mini") : null,
      el("div", { class: "t-id", text: info.id }), classChip(info),
      el("div", { class: "t-cos", text: q["s" + side][s][rank].toFixed(3) }), mark]);
  }

  function renderDensity(it) {
    const q = it.q, info = it.info;
    const levels = SIZES.map((n, s) => {
      const a = q.a[s], b = q.b[s];
      const strip = (side, list, other) => el("div", { class: "strip strip-" + side }, [
        el("div", { class: "strip-label", text: side.toUpperCase() }),
        el("div", { class: "tiles", style: `--k:${Math.min(K, 10)}` }, list.map((row, rank) => tile(q, side, s, rank)))]);
      const same = sameClass(info, a);
      return el("div", { class: "level", data: { n, overlap: q.overlap[s] } }, [
        el("div", { class: "level-head" }, [
          el("b", { text: `N = ${num(n)}` + (s === LAST ? " (whole pool)" : "") }),
          el("span", { text: `overlap ${ov(q.overlap[s])} / ${K}` }),
          el("span", { text: `chance ${score(chance(n))}` }),
          same != null ? el("span", { text: `same class: A ${same}/${K}, B ${sameClass(info, b)}/${K}` }) : null,
          el("span", { text: `nearest cos: A ${q.sa[s][0].toFixed(3)}, B ${q.sb[s][0].toFixed(3)}` })]),
        strip("a", a, b), strip("b", b, a)]);
    });
    document.getElementById("density-view").replaceChildren(
      el("p", { class: "note", style: "color:var(--muted);margin:0 0 8px", text:
        `The same query in nested random galleries of growing N (each contains the smaller ones). ` +
        `As N grows, nearer rows appear and the two lists are decided by ever finer differences.` }),
      ...levels);
  }

  function select(it) {
    if (!it) return;
    state.selected = it;
    markSelected();
    document.getElementById("query-head").replaceChildren(...queryHead(it).filter(Boolean));
    renderNeighbours(it);
    renderDensity(it);
    drawHistogram(it.overlap);
    if (location.hash !== "#row=" + it.q.row) history.replaceState(null, "", "#row=" + it.q.row);
  }

  function showTab(tab) {
    state.tab = tab;
    document.querySelectorAll("#tabs button").forEach((b) => {
      b.classList.toggle("active", b.dataset.tab === tab);
      b.setAttribute("aria-selected", String(b.dataset.tab === tab));
    });
    document.getElementById("neighbours-view").hidden = tab !== "neighbours";
    document.getElementById("density-view").hidden = tab !== "density";
  }
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));

  document.getElementById("foot").textContent =
    `Neighbours: exact cosine k-NN (ties by the smaller row), the shown queries and ${num(S.candidates)} ` +
    `candidate rows searched against each gallery (queries × gallery, never N × N). Galleries: nested random subsets ` +
    `of the pool (${SIZES.map(num).join(" ⊂ ")}). Score: mean |A ∩ B| / k over the candidates (its expectation under ` +
    `uniformly random, independent tie-breaking on each side; the lists shown break ties by the smaller row), an estimate of the ` +
    `all-rows score${S.candidates === meta.n ? " (here every row)" : ""}; interval: bootstrap over sampling units; ` +
    `null: shuffled pairings of B.` + (meta.note ? " " + meta.note : "");

  function fromHash() {
    const match = /^#row=(\d+)$/.exec(location.hash);
    return match ? items.find((it) => it.q.row === +match[1]) : null;
  }
  window.addEventListener("hashchange", () => {
    const it = fromHash();
    if (it && it !== state.selected) { select(it); revealSelected(); }
  });

  legend();
  renderList();
  select(fromHash() || state.visible[0]);
  revealSelected();
  showTab("neighbours");
  performance.mark("cave-browse-ready");
})();
