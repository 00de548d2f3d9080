// Background jobs in the browser, in real headless Chromium on OPFS: a backup runs step by step
// between the Worker's messages, so writes and searches go on while it runs and `cancel` stops
// it — the archive never appears, the writes all stay, and a later backup holds them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { launchBrowser } from './launch.mjs';
import { root, startServer } from '../lib/server.mjs';

let server; let browser; let ctx;

before(async () => {
  server = await startServer({ playground: join(root, 'web') });
  browser = await launchBrowser();
  ctx = browser.ctx;
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a running backup is cancelled while writes and searches go on', async () => {
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.origin}/index.html`);
  const r = await page.evaluate(async () => {
    const { open } = await import('/src/index.js');
    const db = await open({ name: 'jobs-test' });
    const DIM = 128;
    // A pseudo-random vector per id (the fractional part of a scaled sine: distinct enough).
    const vec = (i) => Array.from({ length: DIM }, (_, d) => { const x = Math.sin((i + 1) * 12.9898 + (d + 1) * 78.233) * 43758.5453; return x - Math.floor(x) - 0.5; });
    const batch = (from, n) => Array.from({ length: n }, (_, k) => ({ id: `v${from + k}`, vector: vec(from + k), meta: { i: from + k } }));
    await db.createIndex('docs', { dim: DIM, precision: 'float32' });
    for (let i = 0; i < 6000; i += 500) await db.upsert('docs', batch(i, 500));
    await db.checkpoint('docs');
    // Paced to half a MiB a second, the ~4 MB archive takes seconds: long enough to act on.
    await db.setBackupRate(0.5);
    const started = await db.startBackup('docs', 'slow');
    const during = [];
    for (let i = 0; i < 10; i++) {
      const from = 100000 + i * 10;
      const n = await db.upsert('docs', batch(from, 10));
      const hits = await db.search('docs', { vector: vec(from + 3), k: 1 });
      const job = await db.job(started.job_id);
      during.push({ n, top: hits[0].id, want: `v${from + 3}`, status: job.status });
      await new Promise((res) => setTimeout(res, 30));
    }
    const cancelling = await db.cancel(started.job_id);
    const ended = await db.waitJob(started.job_id);
    const afterCancel = await db.backups();
    const count = (await db.describe('docs')).total_elements;
    // Unpaced, the next backup completes and holds every write, those made during the
    // cancelled one included.
    await db.setBackupRate(0);
    const ok = await db.backup('docs', 'fast');
    await db.restore('fast', 'copy');
    const copy = (await db.describe('copy')).total_elements;
    const jobs = await db.jobs();
    await db.close();
    return { started, during, cancelling, ended, afterCancel, count, ok, copy, jobs: jobs.map((j) => [j.backup_name, j.kind, j.status]) };
  });
  assert.equal(r.started.status, 'running', JSON.stringify(r.started));
  for (const d of r.during) {
    assert.equal(d.n, 10);
    assert.equal(d.top, d.want);
    assert.equal(d.status, 'running', JSON.stringify(r.during));
  }
  assert.ok(['cancelling', 'cancelled'].includes(r.cancelling.status), r.cancelling.status);
  assert.equal(r.ended.status, 'cancelled');
  assert.ok(!r.afterCancel.includes('slow'), JSON.stringify(r.afterCancel));
  assert.equal(r.count, 6100);
  assert.equal(r.ok.status, 'completed');
  assert.equal(r.ok.cut.vector_count, 6100);
  assert.equal(r.copy, 6100);
  assert.deepEqual(r.jobs, [['slow', 'backup', 'cancelled'], ['fast', 'backup', 'completed'], ['fast', 'restore', 'completed']]);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a graph rebuild runs between messages, cancels cleanly, and its parameters survive a reopen', async () => {
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.origin}/index.html`);
  const r = await page.evaluate(async () => {
    const { open } = await import('/src/index.js');
    const DIM = 64;
    const vec = (i) => Array.from({ length: DIM }, (_, d) => { const x = Math.sin((i + 1) * 12.9898 + (d + 1) * 78.233) * 43758.5453; return x - Math.floor(x) - 0.5; });
    const batch = (from, n) => Array.from({ length: n }, (_, k) => ({ id: `v${from + k}`, vector: vec(from + k) }));
    let db = await open({ name: 'rebuild-test' });
    await db.createIndex('rb', { dim: DIM, precision: 'float32', M: 8, ef_con: 64 });
    for (let i = 0; i < 6000; i += 500) await db.upsert('rb', batch(i, 500));
    // A slow rebuild (M 64, ef_con 1000): writes and searches answer while it runs, then cancel.
    const slow = await db.startRebuild('rb', 64, 1000);
    const during = [];
    for (let i = 0; i < 3; i++) {
      const from = 100000 + i * 10;
      await db.upsert('rb', batch(from, 10));
      const top = (await db.search('rb', { vector: vec(from + 3), k: 1 }))[0].id;
      during.push({ top, want: `v${from + 3}`, status: (await db.job(slow.job_id)).status });
    }
    await db.cancel(slow.job_id);
    const cancelled = await db.waitJob(slow.job_id);
    const afterCancel = (await db.describe('rb')).M;
    // The next one runs to the end; a write made during it is in the new graph.
    const next = await db.startRebuild('rb', 16, 100);
    await db.upsert('rb', batch(200000, 1));
    const done = await db.waitJob(next.job_id);
    await db.close();
    db = await open({ name: 'rebuild-test' });
    const info = await db.describe('rb');
    const found = (await db.search('rb', { vector: vec(200000), k: 1 }))[0].id;
    const status = await db.rebuildStatus('rb');
    await db.deleteIndex('rb');
    await db.close();
    return { during, cancelled: cancelled.status, afterCancel, done: done.status, M: info.M, ef: info.ef_con, count: info.total_elements, found, last: status.job_id === next.job_id };
  });
  for (const d of r.during) {
    assert.equal(d.top, d.want);
    assert.equal(d.status, 'running', JSON.stringify(r.during));
  }
  assert.equal(r.cancelled, 'cancelled');
  assert.equal(r.afterCancel, 8, 'a cancelled rebuild leaves the old graph');
  assert.equal(r.done, 'completed');
  assert.deepEqual([r.M, r.ef, r.count], [16, 100, 6031]);
  assert.equal(r.found, 'v200000');
  assert.ok(r.last);
  assert.deepEqual(errors, []);
  await page.close();
});

test('collections through the Worker on OPFS: every field type, a rebuild of a further field, a reopen', async () => {
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.origin}/index.html`);
  const r = await page.evaluate(async () => {
    const { open, rerank } = await import('/src/index.js');
    const vec = (i, d, s) => Float32Array.from({ length: d }, (_, k) => { const x = Math.sin((i + 1) * 12.9898 + (k + 1) * s) * 43758.5453; return x - Math.floor(x) - 0.5; });
    let db = await open({ name: 'collections-test' });
    await db.createCollection('c', [
      { name: 'body', type: 'vector', params: { dimension: 16, precision: 'float32' } },
      { name: 'toks', type: 'multi_vector', params: { dimension: 8, pooling: 'mean' } },
      { name: 'kw', type: 'sparse', sparse_model: 'endee_bm25' },
    ]);
    let col = db.collection('c');
    const obj = (i) => ({ id: `o${i}`, meta: { i }, fields: { body: vec(i, 16, 78.2), toks: [vec(i, 8, 3.1), vec(i + 7, 8, 5.3)], kw: { indices: [i % 50], values: [1] } } });
    for (let i = 0; i < 400; i += 100) await col.upsert(Array.from({ length: 100 }, (_, k) => obj(i + k)));
    const q = obj(123).fields;
    const ask = async () => {
      const res = await col.search({ fields: { body: { query: q.body, limit: 3 }, toks: { query: q.toks, limit: 3 }, kw: { query: { indices: [23], values: [1] }, limit: 10 } } });
      return { body: res.results.body[0].id, toks: res.results.toks[0].id, fused: rerank(res, { limit: 1 }).results[0].id };
    };
    const before = await ask();
    const rb = await col.rebuild([{ field: 'toks', M: 12, ef_con: 80 }]);
    await db.close();
    db = await open({ name: 'collections-test' });
    col = db.collection('c');
    const after = await ask();
    const M = (await col.describe()).fields.find((f) => f.name === 'toks').params.M;
    const [got] = await col.getObjects(['o5']);
    await db.deleteIndex('c');
    await db.close();
    return { before, after, rb: rb.status, M, got: [got.meta.i, got.multi_vectors.toks.length, got.vectors.body.length] };
  });
  assert.deepEqual(r.before, { body: 'o123', toks: 'o123', fused: 'o123' });
  assert.deepEqual(r.after, r.before);
  assert.equal(r.rb, 'completed');
  assert.equal(r.M, 12);
  assert.deepEqual(r.got, [5, 2, 16]);
  assert.deepEqual(errors, []);
  await page.close();
});

test('searchMany through the Worker: one message each way, typed results, same answers as search', async () => {
  const page = await ctx.newPage();
  await page.goto(`${server.origin}/index.html`);
  const r = await page.evaluate(async () => {
    const { open } = await import('/src/index.js');
    const db = await open({ name: 'many-test', storage: 'memory' });
    await db.createIndex('m', { dim: 16, space_type: 'cosine', precision: 'float32' });
    const vecs = Array.from({ length: 500 }, (_, i) => Array.from({ length: 16 }, (_, d) => Math.sin(i * 7.13 + d * 1.7)));
    await db.upsert('m', vecs.map((v, i) => ({ id: String(i), vector: v })));
    const queries = new Float32Array(20 * 16);
    for (let q = 0; q < 20; q++) queries.set(vecs[q * 11], q * 16);
    const many = await db.searchMany('m', queries, { k: 5, ef: 64 });
    const one = [];
    for (let q = 0; q < 20; q++) one.push((await db.search('m', { vector: vecs[q * 11], k: 5, ef: 64 })).map((h) => h.id));
    const out = {
      same: JSON.stringify(many.map((x) => x.ids)) === JSON.stringify(one),
      typed: many.every((x) => x.similarities instanceof Float32Array && x.similarities.length === 5),
      self: many.every((x, q) => x.ids[0] === String(q * 11)),
      callerKept: queries.length === 320, // the caller's buffer was copied, not transferred away
    };
    await db.close();
    return out;
  });
  assert.deepEqual(r, { same: true, typed: true, self: true, callerKept: true });
  await page.close();
});
