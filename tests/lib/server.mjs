// Starts the real `cairn serve` on a free port on 127.0.0.1 for the JS tests, and stops it.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The server binary (CAIRN_BIN, or the release build). */
export const bin = process.env.CAIRN_BIN || join(root, 'target', 'release', 'cairn');

/** A port nothing listens on right now. */
export function freePort() {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
  });
}

/**
 * Starts a server on a fresh data directory and waits for /health.
 * Returns `{ origin, api, stop }`; `stop()` sends SIGTERM and resolves once the server has
 * exited and its data directory is removed. `extra`: more `serve` flags.
 */
export async function startServer({ playground, extra = [] } = {}) {
  const port = await freePort();
  const data = mkdtempSync(join(tmpdir(), 'cairn-js-'));
  const args = ['serve', '--data-dir', data, '--port', String(port), ...extra];
  if (playground) args.push('--playground', playground);
  const proc = spawn(bin, args, { stdio: 'ignore' });
  const exited = new Promise((res) => proc.once('exit', res));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
    rmSync(data, { recursive: true, force: true });
  };
  const origin = `http://127.0.0.1:${port}`;
  const api = `${origin}/api/v1`;
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(api + '/health')).ok) return { origin, api, stop }; } catch { /* starting */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  await exited;
  rmSync(data, { recursive: true, force: true });
  throw new Error('server did not start');
}
