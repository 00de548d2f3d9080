// The playground page: drives the cairndb package (its Worker owns OPFS) and draws the space.
import { open } from './src/index.js';

const $ = (id) => document.getElementById(id);
const status = (msg, err = false) => { const s = $('status'); s.textContent = msg; s.className = err ? 'err' : ''; };
let db;
let points = []; // {id, vector, cluster}
let lastQuery = null;
let lastHits = [];

function rng(seed) { let s = seed >>> 0; return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 4294967296; }; }
function gauss(r) { return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r()); }

function exampleVectors(n, dim, seed = 7) {
  const r = rng(seed);
  const centers = Array.from({ length: 6 }, () => Array.from({ length: dim }, () => gauss(r)));
  return Array.from({ length: n }, (_, i) => {
    const c = i % centers.length;
    return { id: `v${i}`, vector: centers[c].map((x) => x + 0.45 * gauss(r)), meta: { note: `example ${i}` }, filter: { cluster: `c${c}`, n: i } };
  });
}

function projector(dim) {
  const r = rng(12345);
  const a = Array.from({ length: dim }, () => gauss(r));
  const b = Array.from({ length: dim }, () => gauss(r));
  return (v) => [v.reduce((s, x, i) => s + x * a[i], 0), v.reduce((s, x, i) => s + x * b[i], 0)];
}

const COLORS = ['#277da1', '#f8961e', '#43aa8b', '#f94144', '#577590', '#90be6d', '#9b5de5', '#f9c74f'];

function draw() {
  const c = $('plot');
  const g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  if (!points.length) return;
  const proj = projector(points[0].vector.length);
  const all = points.map((p) => ({ ...p, xy: proj(p.vector) }));
  const q = lastQuery ? proj(lastQuery) : null;
  const xs = all.map((p) => p.xy[0]).concat(q ? [q[0]] : []);
  const ys = all.map((p) => p.xy[1]).concat(q ? [q[1]] : []);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => 20 + ((x - x0) / (x1 - x0 || 1)) * (c.width - 40);
  const sy = (y) => 20 + ((y - y0) / (y1 - y0 || 1)) * (c.height - 40);
  const hit = new Set(lastHits.map((h) => h.id));
  for (const p of all) {
    const k = Number(String(p.cluster ?? '').replace(/\D/g, '')) || 0;
    g.fillStyle = COLORS[k % COLORS.length];
    g.globalAlpha = hit.size && !hit.has(p.id) ? 0.25 : 0.85;
    g.beginPath(); g.arc(sx(p.xy[0]), sy(p.xy[1]), hit.has(p.id) ? 6 : 3, 0, 7); g.fill();
    if (hit.has(p.id)) { g.strokeStyle = '#000'; g.lineWidth = 1.5; g.stroke(); }
  }
  g.globalAlpha = 1;
  if (q) { g.fillStyle = '#d00000'; g.font = '22px sans-serif'; g.fillText('★', sx(q[0]) - 8, sy(q[1]) + 8); }
}

async function refresh() {
  const list = await db.listIndexes();
  $('indexes').textContent = list.map((i) => `${i.name} (${i.total_elements}, ${i.precision})`).join(', ') || 'none';
  const bks = await db.backups();
  const jobs = await db.jobs();
  // Names, ids, meta and filters come from data (a restored archive, a pasted file): they are
  // rendered as text nodes, never through innerHTML, so nothing in them can run as script.
  const bkList = $('bk-list');
  bkList.replaceChildren(...bks.map((b) => el('div', {}, [b + ' ', el('a', { href: '#', 'data-dl': b, onclick: (e) => { e.preventDefault(); download(b); } }, ['download .tar'])])));
  bkList.append(el('div', { style: 'font-size:12px;color:#666' }, [jobs.slice(-5).map((j) => `${j.kind} ${j.backup_name}: ${j.status}`).join(' · ')]));
}

/** An element with properties and children (strings become text nodes). */
function el(tag, props, children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'style') e.style.cssText = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children);
  return e;
}

async function loadPoints(name) {
  try {
    const info = await db.describe(name);
    if (!info.total_elements) { points = []; draw(); return; }
    const probe = Array.from({ length: info.dimension }, () => 0);
    probe[0] = 1;
    const hits = await db.search(name, { vector: probe, k: Math.min(info.total_elements, 2000), ef: 2000, include_vectors: true });
    points = hits.map((h) => ({ id: h.id, vector: h.vector, cluster: h.filter?.cluster }));
  } catch { points = []; }
  draw();
}

const ixName = () => $('ix-name').value.trim();

async function act(label, f) {
  try { status(`${label}…`); const msg = await f(); status(msg ?? `${label}: done`); await refresh(); } catch (e) { status(`${label} failed (${e.status ?? ''}): ${e.message}`, true); }
}

async function insert(items) {
  for (let i = 0; i < items.length; i += 1000) await db.upsert(ixName(), items.slice(i, i + 1000));
  await loadPoints(ixName());
  return `inserted ${items.length} vectors into ${ixName()}`;
}

async function download(name) {
  const blob = await db.exportBackupBlob(name);
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `${name}.tar`;
  document.body.append(a); a.click(); a.remove();
  status(`downloading ${name}.tar (${blob.size} bytes)`);
}

async function restoreFile(file) {
  const base = file.name.replace(/\.tar$/, '').replace(/[^A-Za-z0-9_-]/g, '_') || 'upload';
  const target = $('rs-target').value.trim();
  await act('restore', async () => {
    const names = await db.backups();
    const name = names.includes(base) ? `${base}_${Date.now()}` : base;
    const m = await db.importBackup(name, file);
    const job = await db.restore(name, target);
    $('ix-name').value = target;
    await loadPoints(target);
    return `restored ${m.vector_count} vectors (made by ${m.source.host}) into ${target}: job ${job.status}`;
  });
}

function wire() {
  $('create').onclick = () => act('create', async () => {
    await db.createIndex(ixName(), { dim: Number($('ix-dim').value), space_type: $('ix-space').value, precision: $('ix-precision').value });
    points = []; draw();
    return `created ${ixName()}`;
  });
  $('generate').onclick = () => act('insert', () => insert(exampleVectors(Number($('gen-n').value), Number($('ix-dim').value))));
  $('insert-paste').onclick = () => act('insert', () => insert(JSON.parse($('paste').value)));
  $('vec-file').onchange = (e) => act('insert', async () => insert(JSON.parse(await e.target.files[0].text())));
  $('search').onclick = () => act('search', async () => {
    const id = $('q-id').value.trim();
    const info = await db.describe(ixName());
    const vector = id ? (await db.get(ixName(), id)).vector : Array.from({ length: info.dimension }, () => Math.random() - 0.5);
    const ftext = $('q-filter').value.trim();
    const filter = ftext ? JSON.parse(ftext) : undefined;
    lastQuery = vector;
    lastHits = await db.search(ixName(), { vector, k: Number($('q-k').value), filter });
    $('results').querySelector('tbody').replaceChildren(...lastHits.map((h, i) => el('tr', {}, [i + 1, h.id, h.similarity.toFixed(4), JSON.stringify(h.filter)].map((c) => el('td', {}, [String(c)])))));
    if (!points.length) await loadPoints(ixName());
    draw();
    return `${lastHits.length} results`;
  });
  $('backup').onclick = () => act('backup', async () => {
    $('bk-progress').value = 0;
    const job = await db.backup(ixName(), $('bk-name').value.trim(), { onProgress: ({ done, total }) => { $('bk-progress').value = total ? done / total : 1; } });
    $('bk-progress').value = 1;
    return `backup ${job.backup_name} ${job.status}: ${job.archive_size} bytes, sha256 ${job.archive_sha256.slice(0, 12)}…, ${job.cut.vector_count} vectors`;
  });
  $('rs-file').onchange = (e) => restoreFile(e.target.files[0]);
  const drop = $('drop');
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove('over'); if (e.dataTransfer.files[0]) restoreFile(e.dataTransfer.files[0]); };
}

try {
  const storage = new URLSearchParams(location.search).get('storage') ?? 'opfs';
  db = await open({ name: 'playground', storage });
  $('storage').textContent = `storage: ${storage}`;
  wire();
  await refresh();
  const list = await db.listIndexes();
  if (list.length) { $('ix-name').value = list[0].name; await loadPoints(list[0].name); }
  status('ready');
} catch (e) {
  status(`cannot open the database: ${e.message}`, true);
}
