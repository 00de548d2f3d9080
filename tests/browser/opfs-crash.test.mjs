// The browser's storage commits atomically: a Worker terminated after any number of storage
// operations of a checkpoint or a restore leaves, at the next open, every index there and whole.
// Each round opens the database in a fresh Worker, checks it, then runs the operation with a
// budget of N mutating OPFS calls (write, truncate, flush); the call past the budget throws and
// every later one too, as if the Worker had been killed there, and the page terminates it.
// N runs from 1 until the operation completes within its budget.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser } from './launch.mjs';
import { root, startServer } from '../lib/server.mjs';

let server; let browser; let ctx; let app;

const WORKER = `
import init, { CairnDb } from './wasm/cairn_wasm.js';
import { OpfsStorage } from './src/opfs-storage.js';
let budget = Infinity; let dead = false; let ops = 0;
const P = FileSystemSyncAccessHandle.prototype;
for (const m of ['write', 'truncate', 'flush']) {
  const orig = P[m];
  P[m] = function (...a) {
    if (dead || ops >= budget) { dead = true; throw new Error('worker killed here'); }
    ops += 1;
    return orig.apply(this, a);
  };
}
async function openStorage(name) {
  for (let i = 0; ; i++) {
    try { return await OpfsStorage.open(name); } catch (e) {
      if (i > 100) throw e; // the previous Worker's handles are still being released
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
function state(db) {
  const out = {};
  for (const ix of db.listIndexes()) {
    const hits = db.search(ix.name, { vector: Array.from({ length: 8 }, (_, d) => d), k: 3 });
    out[ix.name] = { n: ix.total_elements, hits: hits.length };
  }
  return out;
}
// Runs a started job to its end, as the package's Worker does between messages.
function run(db, job) {
  while (db.step(64).running > 0) { /* next slice */ }
  const j = db.job(job.job_id);
  if (j.status !== 'completed') throw new Error(j.kind + ' ' + j.status + ': ' + j.error);
}
self.onmessage = async ({ data }) => {
  const { name, action, crashAfter } = data;
  try {
    await init();
    const db = CairnDb.openWith(await openStorage(name));
    if (action === 'setup') {
      db.createIndex('ix', { dim: 8, space_type: 'l2', precision: 'int8' });
      for (let b = 0; b < 3; b++) {
        db.upsert('ix', Array.from({ length: 100 }, (_, i) => ({ id: 'v' + (b * 100 + i), vector: Array.from({ length: 8 }, (_, d) => (b * 100 + i + d) % 17) })));
      }
      run(db, db.startBackup('ix', 'snap'));
      self.postMessage({ before: state(db) });
      return;
    }
    const before = state(db);
    if (action === 'restore' && before.r) db.deleteIndex('r');
    budget = crashAfter;
    let error = null;
    try {
      if (action === 'checkpoint') db.checkpoint('ix');
      if (action === 'restore') run(db, db.startRestore('snap', 'r'));
    } catch (e) { error = String(e?.message ?? e); }
    self.postMessage({ before, completed: !dead && !error, error, ops });
  } catch (e) {
    self.postMessage({ fatal: String(e?.message ?? e) });
  }
};
`;

before(async () => {
  app = mkdtempSync(join(tmpdir(), 'cairn-crash-app-'));
  symlinkSync(join(root, 'web', 'src'), join(app, 'src'));
  symlinkSync(join(root, 'web', 'wasm'), join(app, 'wasm'));
  writeFileSync(join(app, 'crash-worker.js'), WORKER);
  writeFileSync(join(app, 'index.html'), '<!doctype html><title>crash</title>');
  server = await startServer({ playground: app });
  browser = await launchBrowser();
  ctx = browser.ctx;
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (app) rmSync(app, { recursive: true, force: true });
});

/** Runs one Worker with `msg` to its first answer, then terminates it. */
async function round(page, msg) {
  return page.evaluate((m) => new Promise((resolve) => {
    const w = new Worker('/crash-worker.js', { type: 'module' });
    w.onmessage = (e) => { w.terminate(); resolve(e.data); };
    w.onerror = (e) => { w.terminate(); resolve({ fatal: e.message }); };
    w.postMessage(m);
  }), msg);
}

for (const action of ['checkpoint', 'restore']) {
  test(`a Worker killed at any step of a ${action} leaves every index whole`, async () => {
    const page = await ctx.newPage();
    await page.goto(`${server.origin}/index.html`);
    const name = `crash-${action}`;
    const setup = await round(page, { name, action: 'setup' });
    assert.deepEqual(setup.before, { ix: { n: 300, hits: 3 } }, JSON.stringify(setup));
    let n = 1;
    for (; n < 400; n++) {
      const r = await round(page, { name, action, crashAfter: n });
      assert.equal(r.fatal, undefined, `round ${n}: ${r.fatal}`);
      // Whatever the previous round was killed at, the index is there and whole, and a
      // restore target is either absent or complete.
      assert.deepEqual(r.before.ix, { n: 300, hits: 3 }, `round ${n}: ${JSON.stringify(r.before)}`);
      if (r.before.r) assert.deepEqual(r.before.r, { n: 300, hits: 3 }, `round ${n}`);
      if (r.completed) break;
    }
    assert.ok(n > 5 && n < 400, `the ${action} finished within ${n} storage calls`);
    const last = await round(page, { name, action: 'none', crashAfter: Infinity });
    assert.deepEqual(last.before.ix, { n: 300, hits: 3 });
    if (action === 'restore') assert.deepEqual(last.before.r, { n: 300, hits: 3 });
    console.log(`${action}: killed at each of ${n - 1} storage calls, every reopen whole`);
    await page.close();
  });
}
