// The official npm client `endee@1.0.8`, unchanged, against a real `cairn serve` on 127.0.0.1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Endee, Precision } from 'endee';
import { startServer } from '../lib/server.mjs';

let server;
let base;

before(async () => { server = await startServer(); base = server.api; });
after(() => server.stop());

function rand(seed) {
  let s = seed;
  return () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648 - 0.5; };
}

test('documented flow: create, list, describe, upsert, query, filter, get, delete', async () => {
  const client = new Endee();
  client.setBaseUrl(base);
  await client.createIndex({ name: 'js_docs', dimension: 8, spaceType: 'cosine', precision: Precision.INT8D });
  const list = await client.listIndexes();
  assert.ok(list.indexes.some((i) => i.name === 'js_docs'));
  const index = await client.getIndex('js_docs');
  assert.equal(index.describe().dimension, 8);
  const r = rand(7);
  const data = Array.from({ length: 200 }, () => Array.from({ length: 8 }, r));
  for (let off = 0; off < 200; off += 100) {
    await index.upsert(data.slice(off, off + 100).map((v, j) => ({
      id: `v${off + j}`, vector: v, meta: { n: off + j }, filter: { kind: (off + j) % 3 === 0 ? 'a' : 'b', n: off + j },
    })));
  }
  const res = await index.query({ vector: data[42], topK: 5 });
  assert.equal(res.length, 5);
  assert.equal(res[0].id, 'v42');
  assert.deepEqual(res[0].meta, { n: 42 });
  const filtered = await index.query({ vector: data[42], topK: 10, filter: [{ kind: { $eq: 'a' } }] });
  assert.equal(filtered.length, 10);
  assert.ok(filtered.every((h) => h.filter.kind === 'a'));
  const got = await index.getVector('v5');
  assert.equal(got.id, 'v5');
  assert.deepEqual(got.meta, { n: 5 });
  assert.equal(got.vector.length, 8);
  await index.deleteVector('v5');
  await assert.rejects(index.getVector('v5'));
  const out = await index.deleteWithFilter([{ n: { $range: [100, 199] } }]);
  assert.match(String(out), /100 vectors deleted/);
  const info = await client.getIndex('js_docs');
  assert.equal(info.describe().count, 99);
  await client.deleteIndex('js_docs');
  const after = await client.listIndexes();
  assert.ok(!after.indexes.some((i) => i.name === 'js_docs'));
});

test('hybrid index through the 1.0.8 client (sparseDimension): dense, sparse and fused queries', async () => {
  const client = new Endee();
  client.setBaseUrl(base);
  await client.createIndex({ name: 'js_hybrid', dimension: 8, spaceType: 'cosine', precision: Precision.FLOAT32, sparseDimension: 10000 });
  const index = await client.getIndex('js_hybrid');
  assert.ok(index.isHybrid());
  const r = rand(11);
  const data = Array.from({ length: 100 }, () => Array.from({ length: 8 }, r));
  await index.upsert(data.map((v, i) => ({
    id: `h${i}`, vector: v, filter: { g: i % 2 }, sparseIndices: [i, 1000 + Math.floor(i / 10)], sparseValues: [2, 1],
  })));
  assert.equal((await index.query({ vector: data[42], topK: 1 }))[0].id, 'h42');
  const sparse = await index.query({ sparseIndices: [17], sparseValues: [1], topK: 3 });
  assert.deepEqual(sparse.map((h) => h.id), ['h17']);
  const both = await index.query({ vector: data[42], sparseIndices: [17], sparseValues: [1], topK: 5 });
  assert.ok(['h42', 'h17'].every((id) => both.slice(0, 2).some((h) => h.id === id)), JSON.stringify(both));
  const got = await index.getVector('h17'); // this client returns the dense part only
  assert.equal(got.vector.length, 8);
  await client.deleteIndex('js_hybrid');
});
