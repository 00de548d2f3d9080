// The packed npm package `cairndb`, installed into a clean folder, in Node 20: memory storage,
// directory storage (data survives a reopen), backups with progress, bad input errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
let app;

before(() => {
  app = mkdtempSync(join(tmpdir(), 'cairndb-app-'));
  const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', app], { cwd: join(root, 'web') }).toString().trim();
  const tgz = out.split('\n').pop();
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent', join(app, tgz)], { cwd: app });
  assert.ok(readdirSync(join(app, 'node_modules', 'cairndb', 'wasm')).includes('cairn_wasm_bg.wasm'));
});

after(() => { if (app) rmSync(app, { recursive: true, force: true }); });

function run(script) {
  const file = join(app, `t${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, script);
  return JSON.parse(execFileSync('node', [file], { cwd: app }).toString());
}

const flow = (storage) => `
import { open, CairnError } from 'cairndb';
const db = await open({ storage: ${JSON.stringify(storage)} });
const out = {};
await db.createIndex('docs', { dim: 8, space_type: 'cosine', precision: 'int8' });
const items = Array.from({ length: 300 }, (_, i) => ({ id: 'v' + i, vector: Array.from({ length: 8 }, (_, d) => ((Math.sin(i * 12.9898 + d * 78.233) * 43758.5453) % 1)), meta: { n: i }, filter: { even: i % 2 === 0, n: i } }));
out.upserted = await db.upsert('docs', items);
out.top = (await db.search('docs', { vector: items[42].vector, k: 3 })).map((h) => h.id);
out.filtered = (await db.search('docs', { vector: items[42].vector, k: 5, filter: [{ even: { $eq: false } }, { n: { $range: [0, 100] } }] })).map((h) => h.filter);
// The batch call answers what one search per query answers, filter included.
const fq = [{ even: { $eq: true } }];
const many = await db.searchMany('docs', [items[3].vector, items[42].vector, items[99].vector], { k: 4, ef: 64, filter: fq });
const one = [];
for (const i of [3, 42, 99]) one.push((await db.search('docs', { vector: items[i].vector, k: 4, ef: 64, filter: fq })).map((h) => h.id));
out.many = { same: JSON.stringify(many.map((r) => r.ids)) === JSON.stringify(one), typed: many[0].similarities instanceof Float32Array, n: many.length, first: many[1].ids[0] };
out.get = (await db.get('docs', 'v7')).meta;
out.deleted = await db.deleteByFilter('docs', [{ n: { $range: [200, 299] } }]);
const ticks = [];
const job = await db.backup('docs', 'snap', { onProgress: (p) => ticks.push(p) });
out.job = { status: job.status, count: job.cut.vector_count, sha: job.archive_sha256.length };
out.ticks = ticks.length > 0 && ticks.at(-1).done === ticks.at(-1).total;
const errs = [];
for (const f of [() => db.search('docs', { vector: [1, 2] }), () => db.search('nope', { vector: items[0].vector }), () => db.backup('docs', 'snap'), () => db.upsert('docs', [{ id: 'x', vector: [NaN, 0, 0, 0, 0, 0, 0, 0] }]), () => db.search('docs', { vector: items[0].vector, filter: [{ n: { $gt: 1 } }] })]) {
  try { await f(); errs.push('no error'); } catch (e) { errs.push(e instanceof CairnError ? e.status : 'not CairnError'); }
}
out.errs = errs;
await db.restore('snap', 'copy');
out.copyCount = (await db.describe('copy')).total_elements;
// Rebuild the graph with new parameters while a write goes on; the write is in the new graph.
out.idle = await db.rebuildStatus('docs');
const rb = await db.startRebuild('docs', 24, 100);
await db.upsert('docs', [{ id: 'during', vector: [9, 1, 0, 0, 0, 0, 0, 1] }]);
const done = await db.waitJob(rb.job_id);
const info = await db.describe('docs');
out.rebuild = { kind: rb.kind, status: done.status, M: info.M, ef_con: info.ef_con, last: (await db.rebuildStatus('docs')).job_id === rb.job_id, progress: done.bytes_done === done.bytes_total };
out.during = (await db.search('docs', { vector: [9, 1, 0, 0, 0, 0, 0, 1], k: 1 }))[0].id;
await db.delete('docs', ['during']);
try { await db.rebuild('docs', { M: 2 }); out.badM = 'no error'; } catch (e) { out.badM = e.status; }
console.log(JSON.stringify(out));
`;

test('memory storage: the whole flow', () => {
  const out = run(flow('memory'));
  assert.equal(out.upserted, 300);
  assert.equal(out.top[0], 'v42');
  assert.equal(out.filtered.length, 5);
  assert.ok(out.filtered.every((f) => f.even === false && f.n <= 100));
  assert.deepEqual(out.many, { same: true, typed: true, n: 3, first: 'v42' });
  assert.deepEqual(out.get, { n: 7 });
  assert.equal(out.deleted, 100);
  assert.deepEqual(out.job, { status: 'completed', count: 200, sha: 64 });
  assert.equal(out.ticks, true);
  assert.deepEqual(out.errs, [400, 404, 409, 400, 400]);
  assert.equal(out.copyCount, 200);
  assert.equal(out.idle, null);
  assert.deepEqual(out.rebuild, { kind: 'rebuild', status: 'completed', M: 24, ef_con: 100, last: true, progress: true });
  assert.equal(out.during, 'during');
  assert.equal(out.badM, 400);
});

test('directory storage: data and archives survive a reopen', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairndb-data-'));
  const out = run(flow({ dir }));
  assert.equal(out.copyCount, 200);
  assert.equal(out.rebuild.M, 24);
  const again = run(`
import { open } from 'cairndb';
const db = await open({ storage: { dir: ${JSON.stringify(dir)} } });
const names = (await db.listIndexes()).map((i) => i.name + ':' + i.total_elements);
const backups = await db.backups();
const jobs = (await db.jobs()).map((j) => j.status);
const M = (await db.describe('docs')).M;
console.log(JSON.stringify({ names, backups, jobs, M, v7: (await db.get('docs', 'v7')).meta }));
`);
  assert.equal(again.M, 24, 'the rebuilt parameters are durable');
  assert.deepEqual(again.names.sort(), ['copy:200', 'docs:200']);
  assert.deepEqual(again.backups, ['snap']);
  assert.ok(again.jobs.every((s) => s === 'completed'));
  assert.deepEqual(again.v7, { n: 7 });
  // same file layout as the native server
  assert.ok(readdirSync(join(dir, 'indexes', 'docs')).includes('manifest.json'));
  assert.ok(readdirSync(join(dir, 'backups')).includes('snap.tar'));
  rmSync(dir, { recursive: true, force: true });
});

test('directory storage: a damaged index is reported, the others open, and deleting it clears it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairndb-data-'));
  run(`
import { open } from 'cairndb';
const db = await open({ storage: { dir: ${JSON.stringify(dir)} } });
for (const name of ['good', 'bad']) {
  await db.createIndex(name, { dim: 4, precision: 'float32' });
  await db.upsert(name, [{ id: 'a', vector: [1, 0, 0, 0] }, { id: 'b', vector: [0, 1, 0, 0] }]);
}
await db.close();
console.log('{}');
`);
  const ck = readdirSync(join(dir, 'indexes', 'bad')).find((f) => f.startsWith('ckpt-') && f.endsWith('.bin'));
  writeFileSync(join(dir, 'indexes', 'bad', ck), 'not a checkpoint');
  const out = run(`
import { open } from 'cairndb';
const db = await open({ storage: { dir: ${JSON.stringify(dir)} } });
const notes = await db.recoveryNotes();
const good = (await db.search('good', { vector: [1, 0, 0, 0], k: 1 }))[0].id;
let status = null;
try { await db.search('bad', { vector: [1, 0, 0, 0], k: 1 }); } catch (e) { status = e.status; }
await db.deleteIndex('bad');
await db.createIndex('bad', { dim: 4 });
const names = (await db.listIndexes()).map((i) => i.name).sort();
console.log(JSON.stringify({ notes, good, status, names }));
`);
  assert.equal(out.good, 'a');
  assert.equal(out.status, 503);
  assert.ok(out.notes.some((n) => n.includes('bad') && n.includes('checkpoint')), JSON.stringify(out.notes));
  assert.deepEqual(out.names, ['bad', 'good']);
  rmSync(dir, { recursive: true, force: true });
});

test('collections (Endee v2 model): named fields, per-field search fused by rerank, a v1 index is one', () => {
  const out = run(`
import { open, rerank, CairnError } from 'cairndb';
const db = await open({ storage: 'memory' });
const info = await db.createCollection('docs', [
  { name: 'emb', type: 'vector', params: { dimension: 4, precision: 'float32', M: 12 } },
  { name: 'kw', type: 'sparse', sparse_model: 'endee_bm25' },
]);
const col = db.collection('docs');
const objs = Array.from({ length: 50 }, (_, i) => ({ id: 'o' + i, meta: { i }, filter: { g: i % 2 },
  fields: { emb: [Math.cos(i), Math.sin(i), i / 50, 1], kw: { indices: [i, 100 + (i % 5)], values: [1, 0.5] } } }));
const up = await col.upsert(objs);
const res = await col.search({ fields: { emb: { query: objs[7].fields.emb, limit: 3 }, kw: { query: { indices: [7], values: [1] }, limit: 3 } } });
const fused = rerank(res, { limit: 2 }).results.map((h) => h.id);
const filtered = (await col.search({ fields: { emb: { query: objs[7].fields.emb, limit: 5 } }, filter: [{ g: { $eq: 0 } }] })).results.emb.map((h) => h.filter.g);
const got = await col.getObjects(['o3', 'nope']);
const errs = [];
for (const f of [() => col.upsert([{ id: 'x', fields: { nope: [1, 2, 3, 4] } }]), () => db.createCollection('mv', [{ name: 'm', type: 'multi_vector', params: { dimension: 4 } }]), () => col.deleteObject('missing')]) {
  try { await f(); errs.push('no error'); } catch (e) { errs.push(e instanceof CairnError ? e.status : String(e)); }
}
const rb = await col.rebuild([{ field: 'emb', M: 20, ef_con: 64 }]);
await db.createIndex('legacy', { dim: 4, precision: 'float32' });
const listed = (await db.listCollections()).map((c) => c.name + ':' + c.fields.map((f) => f.name).join(','));
console.log(JSON.stringify({ fields: info.fields.map((f) => f.name), up, top: res.results.emb[0].id, kwTop: res.results.kw[0].id, fused, filtered, got: got.map((o) => [o.id, o.meta.i, o.sparses.kw.indices]), errs, rb: rb.status, M: (await col.describe()).fields[0].params.M, listed }));
`);
  assert.deepEqual(out.fields, ['emb', 'kw']);
  assert.deepEqual(out.up, { upserted: 50 });
  assert.equal(out.top, 'o7');
  assert.equal(out.kwTop, 'o7');
  assert.equal(out.fused[0], 'o7');
  assert.ok(out.filtered.length === 5 && out.filtered.every((g) => g === 0));
  assert.deepEqual(out.got, [['o3', 3, [3, 103]]]);
  assert.deepEqual(out.errs, [400, 400, 404]);
  assert.equal(out.rb, 'completed');
  assert.equal(out.M, 20);
  assert.deepEqual(out.listed.sort(), ['docs:emb,kw', 'legacy:dense']);
});

test('collections with further dense and multi_vector fields, and one without a vector field', () => {
  const out = run(`
import { open, rerank } from 'cairndb';
const db = await open({ storage: 'memory' });
await db.createCollection('rich', [
  { name: 'body', type: 'vector', params: { dimension: 6, precision: 'float32' } },
  { name: 'title', type: 'vector', params: { dimension: 3, precision: 'int8' } },
  { name: 'tokens', type: 'multi_vector', params: { dimension: 4, pooling: 'max' } },
  { name: 'kw', type: 'sparse', sparse_model: 'default' },
]);
let seed = 7;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 - 0.5; };
const vec = (d) => Float32Array.from({ length: d }, rnd);
const objs = Array.from({ length: 120 }, (_, i) => ({ id: 'r' + i, filter: { g: i % 3 },
  fields: { body: vec(6), title: Array.from(vec(3)), tokens: Array.from({ length: 1 + (i % 3) }, () => vec(4)), kw: { indices: [i], values: [1] } } }));
const col = db.collection('rich');
const up = await col.upsert(objs);
const o = objs[42].fields;
const res = await col.search({ fields: { body: { query: o.body, limit: 2 }, title: { query: o.title, limit: 2 }, tokens: { query: o.tokens, limit: 2 }, kw: { query: { indices: [42], values: [1] } } } });
const tops = Object.fromEntries(Object.entries(res.results).map(([f, hits]) => [f, hits[0].id]));
const fused = rerank(res, { limit: 1 }).results[0].id;
const [got] = await col.getObjects(['r41']);
let missing;
try { await col.upsert([{ id: 'x', fields: { body: Array.from(vec(6)), title: [1, 2, 3] } }]); } catch (e) { missing = [e.status, e.message]; }
const rb = await col.rebuild([{ field: 'tokens', M: 10 }, { field: 'title', M: 12 }]);
const described = (await col.describe()).fields;
const tokensM = [described.find((f) => f.name === 'tokens').params.M, described.find((f) => f.name === 'title').params.M, rb.rebuild_fields_done];
const afterRebuild = (await col.search({ fields: { tokens: { query: o.tokens, limit: 1 } } })).results.tokens[0].id;
// No vector field: a multi_vector field and a sparse one.
await db.createCollection('late', [
  { name: 'tok', type: 'multi_vector', params: { dimension: 4, pooling: 'mean' } },
  { name: 'kw', type: 'sparse', sparse_model: 'endee_bm25' },
]);
const late = db.collection('late');
await late.upsert(objs.map((x, i) => ({ id: x.id, fields: { tok: x.fields.tokens, kw: { indices: [i % 10], values: [1] } } })));
const lateFields = (await late.describe()).fields.map((f) => f.type);
const lateTop = (await late.search({ fields: { tok: { query: o.tokens, limit: 1 } } })).results.tok[0].id;
const lateKw = (await late.search({ fields: { kw: { query: { indices: [3], values: [1] }, limit: 20 } } })).results.kw.map((h) => Number(h.id.slice(1)) % 10);
console.log(JSON.stringify({ up, tops, fused, got: [got.id, got.vectors.body.length, got.vectors.title.length, got.multi_vectors.tokens.length], missing,
  rb: rb.status, tokensM, afterRebuild, lateFields, lateTop, lateKw }));
`);
  assert.deepEqual(out.up, { upserted: 120 });
  assert.deepEqual(out.tops, { body: 'r42', title: 'r42', tokens: 'r42', kw: 'r42' });
  assert.equal(out.fused, 'r42');
  assert.deepEqual(out.got, ['r41', 6, 3, 3]);
  assert.equal(out.missing[0], 400);
  assert.match(out.missing[1], /missing a value for field "tokens"/);
  assert.equal(out.rb, 'completed');
  assert.deepEqual(out.tokensM, [10, 12, 2], 'one job rebuilt both fields');
  assert.equal(out.afterRebuild, 'r42');
  assert.deepEqual(out.lateFields, ['multi_vector', 'sparse']);
  assert.equal(out.lateTop, 'r42');
  assert.ok(out.lateKw.length === 12 && out.lateKw.every((x) => x === 3), JSON.stringify(out.lateKw));
});

test('the package ships its README, types and wasm, and its typings check against a typed example', () => {
  const listed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json'], { cwd: join(root, 'web') }).toString())[0].files.map((f) => f.path);
  for (const f of ['README.md', 'LICENSE', 'package.json', 'src/index.js', 'src/index.d.ts', 'src/worker.js', 'wasm/cairn_wasm_bg.wasm']) {
    assert.ok(listed.includes(f), `${f} not in the package: ${listed.join(', ')}`);
  }
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent', 'typescript@5'], { cwd: app });
  const tsc = (file) => execFileSync(join(app, 'node_modules', '.bin', 'tsc'),
    ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--lib', 'es2022,dom', file],
    { cwd: app, stdio: 'pipe' });
  copyFileSync(join(root, 'tests', 'node', 'typed-example.ts'), join(app, 'typed-example.ts'));
  tsc('typed-example.ts');
  // The check has teeth: a wrongly typed call fails it.
  writeFileSync(join(app, 'wrong.ts'), "import { open } from 'cairndb';\nconst db = await open();\nawait db.search('docs', { vector: 'not a vector', k: '3' });\nexport {};\n");
  assert.throws(() => tsc('wrong.ts'), (e) => {
    const out = e.stdout.toString();
    assert.match(out, /wrong\.ts\(3,[0-9]+\): error TS2322/, out);
    return true;
  });
});
