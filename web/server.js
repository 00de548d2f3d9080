// The playground's server tab: manages the `cairn serve` that serves this page, through its
// HTTP API (/api/v1, JSON answers asked for with ?format=json). Everything that comes from data
// (names, ids, meta, filters, errors) is put on the page as text, never as HTML.
import { $, el, exampleVectors, drawScatter, colourBy } from './playground-common.js';

const PAGE = 20;
let current = null; // the index the panels act on
let offset = 0;
let lastQuery = null;
let lastHits = [];
let points = []; // {id, vector, filter} for the plot
let watching = null; // the backup job being watched

const status = (msg, err = false) => { const s = $('status'); s.textContent = msg; s.className = err ? 'err' : ''; };

/** Calls the API with the token; JSON in, JSON (or the raw response) out; errors carry the server's reason. */
async function api(method, path, { json, body, headers = {}, raw = false } = {}) {
  const h = { ...headers };
  const token = sessionStorage.getItem('cairn-token');
  if (token) h.Authorization = token;
  if (json !== undefined) { h['Content-Type'] = 'application/json'; body = JSON.stringify(json); }
  const r = await fetch('/api/v1' + path, { method, headers: h, body });
  if (!r.ok) {
    let why = r.statusText;
    try { why = (await r.json()).error ?? why; } catch { /* not JSON */ }
    const e = new Error(why); e.status = r.status; throw e;
  }
  if (raw) return r;
  const t = await r.text();
  try { return JSON.parse(t); } catch { return t; }
}

async function act(label, f) {
  try { status(`${label}…`); status((await f()) ?? `${label}: done`); } catch (e) { status(`${label} failed (${e.status ?? ''}): ${e.message}`, true); }
}

const enc = encodeURIComponent;
const text = (v) => (typeof v === 'string' ? v : JSON.stringify(v));

function setCurrent(name) {
  current = name; offset = 0;
  for (const s of document.querySelectorAll('.cur')) s.textContent = name ?? '';
}

async function refreshIndexes() {
  const { indexes } = await api('GET', '/index/list');
  $('ix-table').tBodies[0].replaceChildren(...indexes.map((ix) => el('tr', { 'data-name': ix.name }, [
    el('td', {}, [ix.name]), el('td', {}, [ix.dimension ?? '']), el('td', {}, [ix.space_type ?? '']),
    el('td', {}, [ix.precision ?? '']), el('td', {}, [ix.total_elements ?? ix.state]),
    el('td', {}, [
      el('button', { className: 'use', onclick: () => act('open', async () => { setCurrent(ix.name); await refreshData(); return `using ${ix.name}`; }) }, ['use']),
      el('button', { className: 'del', onclick: () => act('delete', async () => { await api('DELETE', `/index/${enc(ix.name)}/delete`); if (current === ix.name) setCurrent(null); await refreshAll(); return `deleted ${ix.name}`; }) }, ['delete']),
    ]),
  ])));
  if (!current && indexes.length) setCurrent(indexes[0].name);
  return indexes;
}

async function refreshBrowse() {
  if (!current) { $('browse').tBodies[0].replaceChildren(); $('page-info').textContent = ''; return; }
  const p = await api('GET', `/index/${enc(current)}/vectors?offset=${offset}&limit=${PAGE}`);
  $('page-info').textContent = p.total ? `${offset + 1}–${offset + p.vectors.length} of ${p.total}` : 'empty';
  $('browse').tBodies[0].replaceChildren(...p.vectors.map((v) => el('tr', {}, [
    el('td', { className: 'mono' }, [v.id]), el('td', { className: 'mono' }, [text(v.filter)]), el('td', { className: 'mono' }, [text(v.meta)]),
  ])));
  $('prev').disabled = offset === 0;
  $('next').disabled = offset + PAGE >= p.total;
}

async function loadPoints() {
  points = [];
  if (current) {
    for (let off = 0; off < 2000; off += 1000) {
      const p = await api('GET', `/index/${enc(current)}/vectors?offset=${off}&limit=1000&include_vectors=true`);
      points.push(...p.vectors);
      if (off + 1000 >= p.total) break;
    }
  }
  const keys = new Set(points.flatMap((p) => (p.filter && typeof p.filter === 'object' ? Object.keys(p.filter) : [])));
  const sel = $('colour-by'); const keep = sel.value;
  sel.replaceChildren(...[...keys].map((k) => el('option', {}, [k])));
  if (keys.has(keep)) sel.value = keep;
  draw();
}

function draw() {
  const colours = colourBy(points.map((p) => p.filter), $('colour-by').value);
  const shares = drawScatter($('plot'), points.map((p, i) => ({ ...p, colour: colours[i] })), { query: lastQuery, hits: lastHits.map((h) => h.id) });
  $('shares').textContent = points.length > 1 ? `(PC1 ${(shares[0] * 100).toFixed(1)} %, PC2 ${(shares[1] * 100).toFixed(1)} % of the variance)` : '';
}

async function refreshBackups() {
  const names = await api('GET', '/backups');
  $('bk-table').tBodies[0].replaceChildren(...names.map((b) => el('tr', { 'data-name': b }, [el('td', {}, [b]), el('td', {}, [
    el('button', { className: 'dl', onclick: () => act('download', () => download(b)) }, ['download']),
    el('button', { className: 'rs', onclick: () => act('restore', () => restore(b)) }, ['restore']),
    el('button', { className: 'del', onclick: () => act('delete', async () => { await api('DELETE', `/backups/${enc(b)}`); await refreshBackups(); return `deleted archive ${b}`; }) }, ['delete']),
  ])])));
}

async function refreshJobs() {
  const { jobs } = await api('GET', '/backups/jobs');
  $('jobs').tBodies[0].replaceChildren(...jobs.slice().reverse().slice(0, 30).map((j) => el('tr', { 'data-state': j.state }, [
    j.kind, j.index_name, j.backup_name, j.state, `${Math.round(j.progress * 100)} %`, j.error ?? '',
  ].map((c) => el('td', {}, [c])))));
}

async function refreshData() { await Promise.all([refreshBrowse(), loadPoints()]); }
async function refreshAll() { await refreshIndexes(); await Promise.all([refreshData(), refreshBackups(), refreshJobs()]); }

/** Polls job `id` until it ends, showing its progress; returns the last record. */
async function watch(id) {
  watching = id; $('cancel').disabled = false;
  try {
    for (;;) {
      const j = await api('GET', `/backups/jobs/${enc(id)}`);
      $('bk-progress').value = j.progress;
      $('bk-job').textContent = `${j.kind} ${j.backup_name}: ${j.state}, ${j.bytes_done} of ${j.bytes_total} bytes`;
      if (!['queued', 'running', 'cancelling'].includes(j.state)) return j;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally { watching = null; $('cancel').disabled = true; await Promise.all([refreshJobs(), refreshBackups()]); }
}

async function download(name) {
  const r = await api('GET', `/backups/${enc(name)}/download`, { raw: true });
  const blob = await r.blob();
  const a = el('a', { href: URL.createObjectURL(blob), download: `${name}.tar` });
  document.body.append(a); a.click(); a.remove();
  return `downloading ${name}.tar (${blob.size} bytes)`;
}

async function restore(name) {
  const target = $('rs-target').value.trim();
  const job = await api('POST', `/backups/${enc(name)}/restore`, { json: { target_index_name: target, async: true } });
  const end = await watch(job.job_id);
  if (end.state !== 'completed') throw new Error(`restore ${end.state}: ${end.error ?? ''}`);
  await refreshIndexes(); setCurrent(target); await refreshData();
  return `restored ${name} into ${target}`;
}

async function insert(items) {
  for (let i = 0; i < items.length; i += 1000) await api('POST', `/index/${enc(current)}/vector/insert`, { json: items.slice(i, i + 1000) });
  await refreshIndexes(); await refreshData();
  return `inserted ${items.length} vectors into ${current}`;
}

function wire() {
  $('token').value = sessionStorage.getItem('cairn-token') ?? '';
  $('connect').onclick = () => act('connect', async () => {
    sessionStorage.setItem('cairn-token', $('token').value);
    const health = await api('GET', '/health');
    const indexes = await refreshIndexes();
    await Promise.all([refreshData(), refreshBackups(), refreshJobs()]);
    $('conn').textContent = `connected to ${location.host} (${health.status})`;
    return `connected: ${indexes.length} indexes`;
  });
  $('create').onclick = () => act('create', async () => {
    const name = $('ix-name').value.trim();
    await api('POST', '/index/create', { json: { index_name: name, dim: Number($('ix-dim').value), space_type: $('ix-space').value, precision: $('ix-precision').value } });
    setCurrent(name); await refreshAll();
    return `created ${name}`;
  });
  $('generate').onclick = () => act('insert', async () => {
    const { dimension } = await api('GET', `/index/${enc(current)}/info`);
    return insert(exampleVectors(Number($('gen-n').value), dimension));
  });
  $('insert-paste').onclick = () => act('insert', () => insert(JSON.parse($('paste').value)));
  $('prev').onclick = () => act('browse', async () => { offset = Math.max(0, offset - PAGE); await refreshBrowse(); return 'page'; });
  $('next').onclick = () => act('browse', async () => { offset += PAGE; await refreshBrowse(); return 'page'; });
  $('colour-by').onchange = draw;
  $('search').onclick = () => act('search', async () => {
    const id = $('q-id').value.trim();
    const vector = id
      ? (await api('POST', `/index/${enc(current)}/vector/get?format=json`, { json: { id } })).vector
      : JSON.parse($('q-vector').value);
    const ftext = $('q-filter').value.trim();
    const body = { vector, k: Number($('q-k').value), ef: Number($('q-ef').value) };
    if (ftext) body.filter = JSON.parse(ftext);
    const t0 = performance.now();
    lastHits = await api('POST', `/index/${enc(current)}/search?format=json`, { json: body });
    const ms = performance.now() - t0;
    lastQuery = vector;
    $('latency').textContent = `${lastHits.length} results in ${ms.toFixed(1)} ms (round trip)`;
    $('results').tBodies[0].replaceChildren(...lastHits.map((h, i) => el('tr', {}, [
      i + 1, h.id, h.similarity.toFixed(4), text(h.filter), text(h.meta),
    ].map((c) => el('td', { className: 'mono' }, [c])))));
    draw();
    return `${lastHits.length} results`;
  });
  $('backup').onclick = () => act('backup', async () => {
    $('bk-progress').value = 0;
    const job = await api('POST', `/index/${enc(current)}/backup`, { json: { name: $('bk-name').value.trim() } });
    const end = await watch(job.job_id);
    return `backup ${end.backup_name} ${end.state}${end.archive_size ? `: ${end.archive_size} bytes` : ''}${end.error ? `: ${end.error}` : ''}`;
  });
  $('cancel').onclick = () => act('cancel', async () => { if (watching) await api('DELETE', `/backups/jobs/${enc(watching)}`); return 'cancelling'; });
  $('up-file').onchange = (e) => act('upload', async () => {
    const name = $('up-name').value.trim();
    await api('POST', `/backups/upload?name=${enc(name)}`, { body: e.target.files[0], headers: { 'Content-Type': 'application/x-tar' } });
    await refreshBackups();
    return `uploaded ${name}`;
  });
}

wire();
