// The playground page: drives the cairndb package (its Worker owns OPFS) and draws the space.
import { open } from './src/index.js';
import { $, el, exampleVectors, drawScatter, colourBy } from './playground-common.js';

const status = (msg, err = false) => { const s = $('status'); s.textContent = msg; s.className = err ? 'err' : ''; };
let db;
let points = []; // {id, vector, filter}
let lastQuery = null;
let lastHits = [];

function draw() {
  const colours = colourBy(points.map((p) => p.filter), 'cluster');
  drawScatter($('plot'), points.map((p, i) => ({ ...p, colour: colours[i] })), { query: lastQuery, hits: lastHits.map((h) => h.id) });
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

async function loadPoints(name) {
  try {
    const info = await db.describe(name);
    if (!info.total_elements) { points = []; draw(); return; }
    const probe = Array.from({ length: info.dimension }, () => 0);
    probe[0] = 1;
    const hits = await db.search(name, { vector: probe, k: Math.min(info.total_elements, 2000), ef: 2000, include_vectors: true });
    points = hits.map((h) => ({ id: h.id, vector: h.vector, filter: h.filter }));
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
