// The playground's server tab in real headless Chromium, against the `cairn serve` that serves
// it (auth on, backups paced so one can be cancelled): connect with the token, create an index,
// insert, browse pages, search by id and by vector with a filter and ef, the PCA plot, back up
// with progress, cancel a backup, download, upload, restore, delete, the job history — and a
// hostile id and meta shown as text. Each panel is saved to target/artifacts/server-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { launchBrowser } from './launch.mjs';
import { root, startServer } from '../lib/server.mjs';

const artifacts = join(root, 'target', 'artifacts');
const TOKEN = 'playground-token';
let server; let browser;

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  server = await startServer({ playground: join(root, 'web'), extra: ['--auth-token', TOKEN, '--backup-max-mib-per-s', '1'] });
  browser = await launchBrowser({ acceptDownloads: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function waitStatus(page, re) {
  try {
    await page.waitForFunction((src) => new RegExp(src).test(document.getElementById('status').textContent), re.source, { timeout: 30000 });
  } catch {
    throw new Error(`waiting for ${re}: status is "${await page.locator('#status').textContent()}"`);
  }
  return page.locator('#status').textContent();
}

const shot = (page, panel, name) => page.locator(panel).screenshot({ path: join(artifacts, `server-${name}.png`) });

test('the server tab manages the server it is served by', async () => {
  const page = await browser.ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(server.origin + '/server.html');

  // A wrong token is refused with the server's reason; the right one connects.
  await page.fill('#token', 'wrong');
  await page.click('#connect');
  assert.match(await waitStatus(page, /connect failed/), /401/);
  await page.fill('#token', TOKEN);
  await page.click('#connect');
  await waitStatus(page, /connected: 0 indexes/);
  await shot(page, '#p-connect', 'connect');

  // Indexes: create, listed with its parameters.
  await page.fill('#ix-name', 'demo');
  await page.fill('#ix-dim', '16');
  await page.selectOption('#ix-precision', 'float32');
  await page.click('#create');
  await waitStatus(page, /created demo/);
  await page.fill('#gen-n', '600');
  await page.click('#generate');
  await waitStatus(page, /inserted 600 vectors into demo/);
  const row = await page.locator('#ix-table tr[data-name="demo"]').textContent();
  assert.ok(row.includes('16') && row.includes('float32') && row.includes('600'), row);
  await shot(page, '#p-indexes', 'indexes');
  await shot(page, '#p-insert', 'insert');

  // A hostile id and meta are data: shown as text, never markup.
  await page.fill('#paste', JSON.stringify([{ id: '<img src=x onerror="window.pwned=1">', vector: Array(16).fill(0.5), meta: '<b>bold?</b>', filter: { cluster: 'c9' } }]));
  await page.click('#insert-paste');
  await waitStatus(page, /inserted 1 vectors/);

  // Browse: pages of 20, in the order written.
  assert.equal(await page.locator('#page-info').textContent(), '1–20 of 601');
  assert.equal(await page.locator('#browse tbody tr').count(), 20);
  assert.equal(await page.locator('#browse tbody tr').first().locator('td').first().textContent(), 'v0');
  await page.click('#next');
  await page.waitForFunction(() => document.getElementById('page-info').textContent.startsWith('21–40'));
  assert.equal(await page.locator('#browse tbody tr').first().locator('td').first().textContent(), 'v20');
  await shot(page, '#p-browse', 'browse');

  // Search by a stored id with a filter and ef: the latency is shown, every hit passes the filter.
  await page.fill('#q-id', 'v2');
  await page.fill('#q-ef', '64');
  await page.click('#search');
  await waitStatus(page, /^10 results$/);
  assert.match(await page.locator('#latency').textContent(), /10 results in [0-9.]+ ms/);
  const hits = await page.locator('#results tbody tr').allTextContents();
  assert.ok(hits[0].includes('v2') && hits.every((r) => r.includes('"cluster":"c2"')), hits.join('\n'));
  // By vector: the hostile one's own vector finds it, and it stays text.
  await page.fill('#q-id', '');
  await page.fill('#q-vector', JSON.stringify(Array(16).fill(0.5)));
  await page.fill('#q-filter', '[{"cluster":{"$eq":"c9"}}]');
  await page.click('#search');
  await waitStatus(page, /^1 results$/);
  assert.ok((await page.locator('#results tbody tr').first().textContent()).includes('<img src=x'));
  assert.equal(await page.locator('#results img, #browse img').count(), 0);
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  await shot(page, '#p-search', 'search');
  await shot(page, '#p-results', 'results');

  // The PCA plot holds every vector, its axes explain most of six clusters' variance.
  assert.equal(await page.locator('#plot').getAttribute('data-points'), '601');
  const shares = await page.locator('#shares').textContent();
  const [pc1, pc2] = [...shares.matchAll(/([0-9.]+) %/g)].map((m) => Number(m[1]));
  assert.ok(pc1 > pc2 && pc2 > 5 && pc1 + pc2 < 100, shares);
  await page.selectOption('#colour-by', 'n');
  await shot(page, '#p-plot', 'plot');

  // Backups: start one, watch it complete, download it.
  await page.fill('#bk-name', 'snap1');
  await page.click('#backup');
  await waitStatus(page, /backup snap1 completed: \d+ bytes/);
  assert.equal(await page.locator('#bk-progress').evaluate((e) => e.value), 1);
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#bk-table tr[data-name="snap1"] button.dl')]);
  const tarPath = join(artifacts, 'server-snap1.tar');
  await dl.saveAs(tarPath);
  assert.ok(statSync(tarPath).size > 1000);
  assert.equal(readFileSync(tarPath).subarray(257, 262).toString(), 'ustar');

  // Cancel: an index of 2 MiB of meta backs up at 1 MiB/s, so it can be cancelled mid-way.
  const api = (path, body) => fetch(server.api + path, { method: 'POST', headers: { Authorization: TOKEN, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal((await api('/index/create', { index_name: 'big', dim: 4, space_type: 'l2', precision: 'float32' })).status, 200);
  const pad = () => Array.from({ length: 4096 }, () => Math.random().toString(36).slice(2, 10)).join('');
  for (let b = 0; b < 4; b++) {
    const r = await api('/index/big/vector/insert', Array.from({ length: 16 }, (_, i) => ({ id: `b${b}-${i}`, vector: [1, i, b, 1], meta: pad() })));
    assert.equal(r.status, 200, await r.text());
  }
  await page.click('#connect');
  await waitStatus(page, /connected: 2 indexes/);
  await page.click('#ix-table tr[data-name="big"] button.use');
  await waitStatus(page, /using big/);
  await page.fill('#bk-name', 'slow');
  await page.click('#backup');
  await page.waitForFunction(() => /running/.test(document.getElementById('bk-job').textContent));
  await page.click('#cancel');
  await waitStatus(page, /backup slow cancelled/);
  await shot(page, '#p-backups', 'backups');

  // Upload the downloaded archive under a new name, restore it, the restored index answers.
  await page.fill('#up-name', 'again');
  await page.setInputFiles('#up-file', tarPath);
  await waitStatus(page, /uploaded again/);
  await page.fill('#rs-target', 'restored');
  await page.click('#bk-table tr[data-name="again"] button.rs');
  await waitStatus(page, /restored again into restored/);
  assert.ok((await page.locator('#ix-table tr[data-name="restored"]').textContent()).includes('601'));
  assert.equal(await page.locator('#page-info').textContent(), '1–20 of 601');
  // Delete an archive and an index.
  await page.click('#bk-table tr[data-name="again"] button.del');
  await waitStatus(page, /deleted archive again/);
  assert.equal(await page.locator('#bk-table tr[data-name="again"]').count(), 0);
  await page.click('#ix-table tr[data-name="big"] button.del');
  await waitStatus(page, /deleted big/);

  // The job history: the backups (one cancelled) and the restore, newest first.
  const jobs = await page.locator('#jobs tbody tr').allTextContents();
  assert.ok(jobs[0].startsWith('restore') && jobs[0].includes('completed'), jobs.join('\n'));
  assert.ok(jobs.some((j) => j.startsWith('backup') && j.includes('slow') && j.includes('cancelled')), jobs.join('\n'));
  assert.ok(jobs.some((j) => j.startsWith('backup') && j.includes('snap1') && j.includes('completed')), jobs.join('\n'));
  await shot(page, '#p-jobs', 'jobs');
  await page.screenshot({ path: join(artifacts, 'server-mode.png'), fullPage: true });
  assert.deepEqual(errors, []);
});
