// Archives move between hosts: one made by the native server restores in Node (wasm) with
// identical search results, and one made in Node restores on the server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decode } from '@msgpack/msgpack';
import { open } from '../../web/src/index.js';
import { startServer } from '../lib/server.mjs';

let server;
let base;
before(async () => { server = await startServer(); base = server.api; });
after(() => server.stop());

const post = (p, body) => fetch(base + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const vec = (i) => Array.from({ length: 16 }, (_, d) => ((Math.sin(i * 12.9898 + d * 78.233) * 43758.5453) % 1));
const queries = [3, 50, 777, 1500].map((i) => vec(i + 0.5));

async function serverSearch(index, q, filter) {
  const body = { k: 10, vector: q };
  if (filter) body.filter = JSON.stringify(filter);
  const r = await post(`/index/${index}/search`, body);
  assert.equal(r.status, 200);
  return decode(new Uint8Array(await r.arrayBuffer())).map((h) => [h[1], h[0]]);
}
const wasmSearch = async (db, index, q, filter) => (await db.search(index, { vector: q, k: 10, filter })).map((h) => [h.id, h.similarity]);

// Same ids in the same order; similarities equal up to float summation order (AVX2 on the
// server, simd128 in wasm add the same products in a different order).
function same(a, b) {
  assert.deepEqual(a.map((h) => h[0]), b.map((h) => h[0]));
  a.forEach((h, i) => assert.ok(Math.abs(h[1] - b[i][1]) < 1e-5, `${h} vs ${b[i]}`));
}

async function waitJob(id) {
  for (;;) {
    const j = await (await fetch(`${base}/backups/jobs/${id}`)).json();
    if (j.status !== 'in_progress') return j;
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('native archive restores in Node with identical results, and back', async () => {
  for (const precision of ['float32', 'int8']) {
    const name = `p_${precision}`;
    assert.equal((await post('/index/create', { index_name: name, dim: 16, space_type: 'cosine', precision })).status, 200);
    const items = Array.from({ length: 3000 }, (_, i) => ({ id: `v${i}`, vector: vec(i), filter: { g: i % 5 } }));
    for (let i = 0; i < items.length; i += 1000) assert.equal((await post(`/index/${name}/vector/insert`, items.slice(i, i + 1000))).status, 200);
    const job = await (await post(`/index/${name}/backup`, { name: `${name}_bk` })).json();
    assert.equal((await waitJob(job.job_id)).status, 'completed');
    const tar = new Uint8Array(await (await fetch(`${base}/backups/${name}_bk/download`)).arrayBuffer());

    const db = await open();
    const m = await db.importBackup('from_server', tar);
    assert.equal(m.source.host, 'native');
    await db.restore('from_server', 'restored');
    for (const q of queries) {
      same(await wasmSearch(db, 'restored', q), await serverSearch(name, q));
      const f = [{ g: { $in: [1, 3] } }];
      same(await wasmSearch(db, 'restored', q, f), await serverSearch(name, q, f));
    }
    // and back: a Node-made archive restores on the server
    await db.upsert('restored', [{ id: 'from_node', vector: vec(99999), filter: { g: 9 } }]);
    const nodeJob = await db.backup('restored', 'node_bk');
    assert.equal(nodeJob.status, 'completed');
    const nodeTar = await db.exportBackup('node_bk');
    const up = await fetch(`${base}/backups/upload?name=${name}_from_node`, { method: 'POST', headers: { 'content-type': 'application/x-tar' }, body: nodeTar });
    assert.equal(up.status, 201, await up.text());
    assert.equal((await post(`/backups/${name}_from_node/restore`, { target_index_name: `${name}_back` })).status, 201);
    for (const q of queries) same(await serverSearch(`${name}_back`, q), await wasmSearch(db, 'restored', q));
    const info = await (await fetch(`${base}/backups/${name}_from_node/info`)).json();
    assert.equal(info.source.host, 'wasm');
    await db.close();
  }
});
