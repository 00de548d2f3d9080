// What both playground tabs share: example data, safe element building, PCA and the scatter plot.

/** The element with id `id`. */
export const $ = (id) => document.getElementById(id);

/** A seeded uniform generator in [0, 1). */
export function rng(seed) { let s = seed >>> 0; return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 4294967296; }; }
/** A standard normal sample from `r`. */
export function gauss(r) { return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r()); }

/** `n` example vectors of `dim` in six clusters, with `cluster` and `n` filter fields. */
export function exampleVectors(n, dim, seed = 7) {
  const r = rng(seed);
  const centers = Array.from({ length: 6 }, () => Array.from({ length: dim }, () => gauss(r)));
  return Array.from({ length: n }, (_, i) => {
    const c = i % centers.length;
    return { id: `v${i}`, vector: centers[c].map((x) => x + 0.45 * gauss(r)), meta: { note: `example ${i}` }, filter: { cluster: `c${c}`, n: i } };
  });
}

/**
 * An element with properties and children. Children that are strings become text nodes, so
 * names, ids, meta and filters from data are never parsed as HTML.
 */
export function el(tag, props, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'style') e.style.cssText = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children.map((c) => (c instanceof Node ? c : String(c))));
  return e;
}

/**
 * The two principal components of `vectors` (rows): the data's mean and the top two
 * eigenvectors of its covariance, by power iteration with deflation (no covariance matrix is
 * formed: each step is two passes over the data), and the share of variance each explains.
 */
export function pca2(vectors, iterations = 60) {
  const n = vectors.length; const d = vectors[0]?.length ?? 0;
  const mean = new Float64Array(d);
  for (const v of vectors) for (let j = 0; j < d; j++) mean[j] += v[j] / n;
  const centred = vectors.map((v) => Float64Array.from(v, (x, j) => x - mean[j]));
  let total = 0;
  for (const v of centred) for (let j = 0; j < d; j++) total += v[j] * v[j];
  const comps = []; const shares = [];
  for (let c = 0; c < 2; c++) {
    const r = rng(99 + c);
    let w = Float64Array.from({ length: d }, () => gauss(r));
    let lambda = 0;
    for (let it = 0; it < iterations; it++) {
      const next = new Float64Array(d);
      for (const v of centred) {
        let p = 0;
        for (let j = 0; j < d; j++) p += v[j] * w[j];
        for (let j = 0; j < d; j++) next[j] += p * v[j];
      }
      for (const u of comps) { // deflate: stay orthogonal to the components found
        let p = 0;
        for (let j = 0; j < d; j++) p += next[j] * u[j];
        for (let j = 0; j < d; j++) next[j] -= p * u[j];
      }
      lambda = Math.hypot(...next);
      if (!lambda) break;
      w = next.map((x) => x / lambda);
    }
    comps.push(w); shares.push(total ? lambda / total : 0);
  }
  const project = (v) => comps.map((u) => { let p = 0; for (let j = 0; j < d; j++) p += (v[j] - mean[j]) * u[j]; return p; });
  return { project, shares };
}

export const COLORS = ['#277da1', '#f8961e', '#43aa8b', '#f94144', '#577590', '#90be6d', '#9b5de5', '#f9c74f'];

/**
 * Draws `points` ({id, vector, colour}) on `canvas` in their PCA plane, the query as ★ and
 * `hits` (ids) ringed; returns the variance shares of the two axes.
 */
export function drawScatter(canvas, points, { query = null, hits = [] } = {}) {
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  canvas.dataset.points = String(points.length);
  if (points.length < 2) return [0, 0];
  const { project, shares } = pca2(points.map((p) => p.vector));
  const all = points.map((p) => ({ ...p, xy: project(p.vector) }));
  const q = query ? project(query) : null;
  const xs = all.map((p) => p.xy[0]).concat(q ? [q[0]] : []);
  const ys = all.map((p) => p.xy[1]).concat(q ? [q[1]] : []);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => 20 + ((x - x0) / (x1 - x0 || 1)) * (canvas.width - 40);
  const sy = (y) => 20 + ((y - y0) / (y1 - y0 || 1)) * (canvas.height - 40);
  const hit = new Set(hits);
  for (const p of all) {
    g.fillStyle = p.colour;
    g.globalAlpha = hit.size && !hit.has(p.id) ? 0.25 : 0.85;
    g.beginPath(); g.arc(sx(p.xy[0]), sy(p.xy[1]), hit.has(p.id) ? 6 : 3, 0, 7); g.fill();
    if (hit.has(p.id)) { g.strokeStyle = '#000'; g.lineWidth = 1.5; g.stroke(); }
  }
  g.globalAlpha = 1;
  if (q) { g.fillStyle = '#d00000'; g.font = '22px sans-serif'; g.fillText('★', sx(q[0]) - 8, sy(q[1]) + 8); }
  return shares;
}

/**
 * A colour per point by the value of `key` in its filter: a blue-to-red scale when every value
 * present is a number (grey where it is absent), else one colour per distinct value (in order
 * of appearance).
 */
export function colourBy(filters, key) {
  const values = filters.map((f) => f?.[key]);
  const present = values.filter((v) => v !== undefined && v !== null);
  if (present.length && present.every((v) => typeof v === 'number')) {
    const [lo, hi] = [Math.min(...present), Math.max(...present)];
    return values.map((v) => (typeof v === 'number' ? `hsl(${240 - 240 * ((v - lo) / (hi - lo || 1))}, 70%, 45%)` : '#999'));
  }
  const seen = new Map();
  return filters.map((f) => {
    const v = JSON.stringify(f?.[key] ?? null);
    if (!seen.has(v)) seen.set(v, COLORS[seen.size % COLORS.length]);
    return seen.get(v);
  });
}
