// Search speed of the wasm core (the npm package's engine) on minilm-50k, in Node and in headless
// Chromium, to set beside the native numbers from `minilm`. Not a test: it prints numbers.
//
//   node tests/bench/wasm_bench.mjs [DATA_DIR] [--limit N]
// Needs web/wasm (scripts/build-web.sh) and tests/browser/node_modules (playwright-core).
import { readFileSync, mkdtempSync, symlinkSync, writeFileSync, cpSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const data = resolve(args.find((a) => !a.startsWith('--')) ?? join(root, '..', 'shared', 'data', 'minilm-50k'));
const limit = Number(args[args.indexOf('--limit') + 1] ?? 0) || 50000;
const EFS = [32, 48, 64, 96];

// The .fvecs / .ivecs files as rows: `{base, queries, gt}` (run in Node and, as source text,
// in the browser).
function parse(files, limit) {
  const rows = (buf, float) => {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const out = [];
    for (let o = 0; o < buf.byteLength;) {
      const d = dv.getInt32(o, true); o += 4;
      const r = new Array(d);
      for (let i = 0; i < d; i++, o += 4) r[i] = float ? dv.getFloat32(o, true) : dv.getInt32(o, true);
      out.push(r);
    }
    return out;
  };
  return { base: rows(files.base, true).slice(0, limit), queries: rows(files.queries, true), gt: rows(files.gt, false) };
}

// The measurement itself, run in Node and (as source text) in the browser.
async function measure(CairnDb, { base, queries, gt }, efs) {
  const results = [];
  for (const precision of ['float32', 'int8']) {
    const db = CairnDb.openMemory();
    db.createIndex('m', { dim: base[0].length, space_type: 'cosine', precision, M: 16, ef_con: 200 });
    let t = performance.now();
    for (let i = 0; i < base.length; i += 1000) db.upsert('m', base.slice(i, i + 1000).map((v, j) => ({ id: String(i + j), vector: v, norm: 1 })));
    const build = (performance.now() - t) / 1000;
    for (const ef of efs) {
      let hit = 0;
      t = performance.now();
      for (let q = 0; q < queries.length; q++) {
        const res = db.search('m', { vector: queries[q], k: 10, ef });
        const want = new Set(gt[q].slice(0, 10));
        for (const h of res) if (want.has(Number(h.id))) hit++;
      }
      const secs = (performance.now() - t) / 1000;
      results.push({ precision, build, ef, api: 'search (JSON-like objects)', qps: queries.length / secs, recall: hit / (queries.length * 10) });
      // The typed fast path: a Float32Array query, ids + a Float32Array back.
      const typed = queries.map((q) => Float32Array.from(q));
      hit = 0;
      t = performance.now();
      for (let q = 0; q < typed.length; q++) {
        const res = db.searchVector('m', typed[q], 10, ef, '');
        const want = new Set(gt[q].slice(0, 10));
        for (const id of res.ids) if (want.has(Number(id))) hit++;
      }
      results.push({ precision, build, ef, api: 'searchVector (typed)', qps: queries.length / ((performance.now() - t) / 1000), recall: hit / (queries.length * 10) });
      // The batch: every query in one call.
      const flat = new Float32Array(typed.length * typed[0].length);
      typed.forEach((q, i) => flat.set(q, i * q.length));
      t = performance.now();
      const many = db.searchMany('m', flat, 10, ef, '');
      const manySecs = (performance.now() - t) / 1000;
      hit = 0;
      for (let q = 0, at = 0; q < typed.length; at += many.counts[q], q++) {
        const want = new Set(gt[q].slice(0, 10));
        for (let j = at; j < at + many.counts[q]; j++) if (want.has(Number(many.ids[j]))) hit++;
      }
      results.push({ precision, build, ef, api: 'searchMany (one call)', qps: queries.length / manySecs, recall: hit / (queries.length * 10) });
    }
    db.free();
  }
  return results;
}

// The npm package's path in the browser: `open()` → its Worker (memory storage), float32 only;
// one `search` message per query against `searchMany` messages of 100 queries.
async function measureWorker(open, { base, queries, gt }, efs) {
  const db = await open({ name: 'bench', storage: 'memory' });
  await db.createIndex('m', { dim: base[0].length, space_type: 'cosine', precision: 'float32', M: 16, ef_con: 200 });
  let t = performance.now();
  for (let i = 0; i < base.length; i += 1000) await db.upsert('m', base.slice(i, i + 1000).map((v, j) => ({ id: String(i + j), vector: v, norm: 1 })));
  const build = (performance.now() - t) / 1000;
  const results = [];
  const dim = base[0].length;
  for (const ef of efs) {
    let hit = 0;
    t = performance.now();
    for (let q = 0; q < queries.length; q++) {
      const res = await db.search('m', { vector: queries[q], k: 10, ef });
      const want = new Set(gt[q].slice(0, 10));
      for (const h of res) if (want.has(Number(h.id))) hit++;
    }
    results.push({ precision: 'float32', build, ef, api: 'Worker: search per query', qps: queries.length / ((performance.now() - t) / 1000), recall: hit / (queries.length * 10) });
    hit = 0;
    t = performance.now();
    for (let q0 = 0; q0 < queries.length; q0 += 100) {
      const batch = new Float32Array(Math.min(100, queries.length - q0) * dim);
      for (let j = 0; j * dim < batch.length; j++) batch.set(queries[q0 + j], j * dim);
      const res = await db.searchMany('m', batch, { k: 10, ef });
      res.forEach((r, j) => { const want = new Set(gt[q0 + j].slice(0, 10)); for (const id of r.ids) if (want.has(Number(id))) hit++; });
    }
    results.push({ precision: 'float32', build, ef, api: 'Worker: searchMany of 100', qps: queries.length / ((performance.now() - t) / 1000), recall: hit / (queries.length * 10) });
  }
  await db.close();
  return results;
}

function files() {
  return {
    base: readFileSync(join(data, 'base.fvecs')),
    queries: readFileSync(join(data, 'queries.fvecs')),
    gt: readFileSync(join(data, 'groundtruth.ivecs')),
  };
}

function print(where, rows) {
  console.log(`\n### wasm in ${where} (${limit.toLocaleString()} x 384, cosine, M=16, ef_construction=200, one thread)\n`);
  console.log('| precision | build s | ef | call | q/s | recall@10 |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.precision} | ${r.build.toFixed(1)} | ${r.ef} | ${r.api} | ${r.qps.toFixed(0)} | ${r.recall.toFixed(3)} |`);
}

const wasm = await import(join(root, 'web', 'wasm', 'cairn_wasm.js'));
await wasm.default({ module_or_path: readFileSync(join(root, 'web', 'wasm', 'cairn_wasm_bg.wasm')) });
console.log(`kernels: ${wasm.kernelBackend()}`);
print('Node ' + process.version, await measure(wasm.CairnDb, parse(files(), limit), EFS));

// Browser: serve a page with the wasm and the data from 127.0.0.1 through `cairn serve`.
const site = mkdtempSync(join(tmpdir(), 'cairn-wasm-bench-'));
cpSync(join(root, 'web', 'wasm'), join(site, 'wasm'), { recursive: true });
cpSync(join(root, 'web', 'src'), join(site, 'src'), { recursive: true });
for (const f of ['base.fvecs', 'queries.fvecs', 'groundtruth.ivecs']) symlinkSync(join(data, f), join(site, f));
writeFileSync(join(site, 'index.html'), `<!doctype html><script type="module">
import init, { CairnDb } from './wasm/cairn_wasm.js';
await init();
const get = async (f) => new Uint8Array(await (await fetch(f)).arrayBuffer());
const files = { base: await get('base.fvecs'), queries: await get('queries.fvecs'), gt: await get('groundtruth.ivecs') };
const data = (${parse.toString()})(files, ${limit});
window.result = await (${measure.toString()})(CairnDb, data, ${JSON.stringify(EFS)});
const { open } = await import('./src/index.js');
window.worker = await (${measureWorker.toString()})(open, data, ${JSON.stringify(EFS)});
</script>`);
const port = await new Promise((res) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); }); });
const dataDir = mkdtempSync(join(tmpdir(), 'cairn-wb-'));
const server = spawn(join(root, 'target', 'release', 'cairn'), ['serve', '--data-dir', dataDir, '--port', String(port), '--playground', site], { stdio: 'ignore' });
const serverExited = new Promise((r) => server.once('exit', r));
const { chromium } = await import(join(root, 'tests', 'browser', 'node_modules', 'playwright-core', 'index.mjs'));
const profile = mkdtempSync(join(tmpdir(), 'cairn-wb-profile-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-sandbox'],
});
try {
  await new Promise((r) => setTimeout(r, 500));
  const page = await ctx.newPage();
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => window.worker, null, { timeout: 900000, polling: 1000 });
  print(`Chromium ${ctx.browser()?.version() ?? ''}`, await page.evaluate(() => window.result.concat(window.worker)));
} finally {
  await ctx.close();
  server.kill('SIGTERM');
  await serverExited;
  // Leave nothing behind in the temp dir: the page's files, the server's data, the profile.
  for (const d of [site, dataDir, profile]) rmSync(d, { recursive: true, force: true });
}
