// The playground in real headless Chromium (Debian's, driven by playwright-core), served by
// `cairn serve`: create, load, search with a filter, back up with progress, download, reload and
// find the data still in OPFS, restore the download and an archive made by the native server,
// a second tab refused. A screenshot is saved to target/artifacts/playground.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, mkdirSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser } from './launch.mjs';
import { root, startServer } from '../lib/server.mjs';

const artifacts = join(root, 'target', 'artifacts');
let server; let browser; let base; let ctx;

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  server = await startServer({ playground: join(root, 'web') });
  base = server.origin;
  browser = await launchBrowser({ acceptDownloads: true });
  ctx = browser.ctx;
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const statusText = (page) => page.getByTestId('status').textContent();
async function waitStatus(page, re) {
  try {
    await page.waitForFunction((src) => new RegExp(src).test(document.getElementById('status').textContent), re.source, { timeout: 30000 });
  } catch (e) {
    throw new Error(`waiting for ${re}: status is "${await statusText(page)}"`);
  }
  return statusText(page);
}

test('playground: create, load, search, back up, reload, restore', async () => {
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(base + '/');
  await waitStatus(page, /ready/);
  await page.fill('#ix-name', 'demo');
  await page.fill('#ix-dim', '32');
  await page.click('#create');
  await waitStatus(page, /created demo/);
  await page.fill('#gen-n', '800');
  await page.click('#generate');
  await waitStatus(page, /inserted 800 vectors/);
  await page.fill('#q-id', 'v2');
  await page.fill('#q-filter', '[{"cluster":{"$eq":"c2"}}]');
  await page.click('#search');
  await waitStatus(page, /10 results/);
  const rows = await page.locator('#results tbody tr').allTextContents();
  assert.equal(rows.length, 10);
  assert.ok(rows[0].includes('v2'), rows[0]);
  assert.ok(rows.every((r) => r.includes('"cluster":"c2"')));
  // a malformed filter is an error, not an empty result
  await page.fill('#q-filter', '[{"cluster":{"$gt":1}}]');
  await page.click('#search');
  assert.match(await waitStatus(page, /failed/), /unsupported operator/);
  await page.fill('#q-filter', '');
  // backup with progress, then download
  await page.fill('#bk-name', 'snap1');
  await page.click('#backup');
  assert.match(await waitStatus(page, /backup snap1 completed/), /800 vectors/);
  assert.equal(await page.locator('#bk-progress').evaluate((p) => p.value), 1);
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('a[data-dl="snap1"]')]);
  const tarPath = join(artifacts, 'snap1.tar');
  await dl.saveAs(tarPath);
  assert.ok(statSync(tarPath).size > 800 * 32);
  await page.screenshot({ path: join(artifacts, 'playground.png'), fullPage: true });
  // reload: the data is still there (OPFS)
  await page.reload();
  await waitStatus(page, /ready/);
  assert.match(await page.getByTestId('indexes').textContent(), /demo \(800, int8\)/);
  // a second tab is refused clearly
  const tab2 = await ctx.newPage();
  await tab2.goto(base + '/');
  assert.match(await waitStatus(tab2, /cannot open/), /open in another tab/);
  await tab2.close();
  // restore the downloaded archive
  await page.fill('#rs-target', 'again');
  await page.setInputFiles('#rs-file', tarPath);
  assert.match(await waitStatus(page, /restored/), /restored 800 vectors \(made by wasm\) into again/);
  // restore an archive made by the native server
  const api = base + '/api/v1';
  const post = (p, b) => fetch(api + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
  assert.equal((await post('/index/create', { index_name: 'srv', dim: 8, space_type: 'l2', precision: 'float32' })).status, 200);
  await post('/index/srv/vector/insert', Array.from({ length: 50 }, (_, i) => ({ id: `s${i}`, vector: Array.from({ length: 8 }, (_, d) => i + d), filter: { cluster: 'c1' } })));
  const job = await (await post('/index/srv/backup', { name: 'native1' })).json();
  for (let i = 0; i < 200; i++) {
    const j = await (await fetch(`${api}/backups/jobs/${job.job_id}`)).json();
    if (j.status === 'completed') break;
    await new Promise((r) => setTimeout(r, 25));
  }
  const nativeTar = Buffer.from(await (await fetch(`${api}/backups/native1/download`)).arrayBuffer());
  const nativePath = join(artifacts, 'native1.tar');
  writeFileSync(nativePath, nativeTar);
  await page.fill('#rs-target', 'fromserver');
  await page.setInputFiles('#rs-file', nativePath);
  assert.match(await waitStatus(page, /restored/), /restored 50 vectors \(made by native\) into fromserver/);
  await page.fill('#q-id', 's7');
  await page.fill('#q-k', '3');
  await page.fill('#q-filter', '[{"cluster":{"$eq":"c1"}}]');
  await page.click('#search');
  await waitStatus(page, /3 results/);
  const top = await page.locator('#results tbody tr').first().textContent();
  assert.ok(top.includes('s7'), top);
  await page.screenshot({ path: join(artifacts, 'playground-restored.png'), fullPage: true });
  // and the archive made in the browser restores on the server, with the same neighbours
  const up = await fetch(`${api}/backups/upload?name=from_browser`, { method: 'POST', headers: { 'content-type': 'application/x-tar' }, body: readFileSync(tarPath) });
  assert.equal(up.status, 201, await up.text());
  assert.equal((await post('/backups/from_browser/restore', { target_index_name: 'browser_made' })).status, 201);
  const info = await (await fetch(`${api}/index/browser_made/info`)).json();
  assert.equal(info.total_elements, 800);
  const manifest = await (await fetch(`${api}/backups/from_browser/info`)).json();
  assert.equal(manifest.source.host, 'wasm');
  // ids and filters from data are shown as text: markup in them never runs
  await page.fill('#ix-name', 'xss');
  await page.fill('#ix-dim', '32');
  await page.click('#create');
  await waitStatus(page, /created xss/);
  const hostile = '<img src=x onerror="window.__xss=1">';
  await page.fill('#paste', JSON.stringify([{ id: hostile, vector: Array.from({ length: 32 }, (_, d) => d % 3), filter: { cluster: '<b onmouseover=x>c9</b>' } }]));
  await page.click('#insert-paste');
  await waitStatus(page, /inserted 1 vector/);
  await page.fill('#q-id', hostile);
  await page.fill('#q-filter', '');
  await page.click('#search');
  await waitStatus(page, /1 results/);
  const first = await page.locator('#results tbody tr').first().textContent();
  assert.ok(first.includes(hostile), first);
  assert.equal(await page.locator('#results img, #results b').count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.deepEqual(errors, []);
});

test('the packed npm package works in the browser from a clean folder', async () => {
  const app = mkdtempSync(join(tmpdir(), 'cairndb-web-app-'));
  const tgz = execFileSync('npm', ['pack', '--silent', '--pack-destination', app], { cwd: join(root, 'web') }).toString().trim().split('\n').pop();
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'web-app', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent', join(app, tgz)], { cwd: app });
  writeFileSync(join(app, 'index.html'), `<!doctype html><script type="module">
import { open } from './node_modules/cairndb/src/index.js';
try {
  const db = await open({ name: 'pkgtest' });
  await db.createIndex('a', { dim: 3, precision: 'float32' });
  await db.upsert('a', [{ id: 'x', vector: [1, 0, 0] }, { id: 'y', vector: [0, 1, 0] }]);
  const hits = await db.search('a', { vector: [0.9, 0.1, 0], k: 1 });
  const job = await db.backup('a', 'b');
  const blob = await db.exportBackupBlob('b');
  window.result = { top: hits[0].id, status: job.status, size: blob.size };
} catch (e) { window.result = { error: e.message }; }
</script>`);
  const srv = await startServer({ playground: app });
  try {
    const page = await ctx.newPage();
    await page.goto(`${srv.origin}/index.html`);
    await page.waitForFunction(() => window.result, null, { timeout: 30000 });
    const r = await page.evaluate(() => window.result);
    assert.deepEqual({ top: r.top, status: r.status }, { top: 'x', status: 'completed' }, JSON.stringify(r));
    assert.ok(r.size > 1024);
    await page.close();
    // A Worker that cannot load fails open() with a CairnError instead of leaving it waiting.
    cpSync(join(app, 'node_modules', 'cairndb'), join(app, 'broken-pkg'), { recursive: true });
    writeFileSync(join(app, 'broken-pkg', 'src', 'worker.js'), "throw new Error('this worker cannot start');\n");
    writeFileSync(join(app, 'broken.html'), `<!doctype html><script type="module">
import { open } from './broken-pkg/src/index.js';
try { await open({ name: 'broken' }); window.result = { opened: true }; }
catch (e) { window.result = { name: e.name, message: e.message }; }
</script>`);
    const broken = await ctx.newPage();
    await broken.goto(`${srv.origin}/broken.html`);
    await broken.waitForFunction(() => window.result, null, { timeout: 30000 });
    const b = await broken.evaluate(() => window.result);
    assert.equal(b.name, 'CairnError', JSON.stringify(b));
    assert.match(b.message, /worker failed/);
    await broken.close();
  } finally {
    await srv.stop();
    rmSync(app, { recursive: true, force: true });
  }
});
