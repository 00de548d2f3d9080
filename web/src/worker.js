// The dedicated Worker that owns the database and every OPFS handle. The page talks to it
// through src/index.js. Requests run one at a time, in order; background jobs (backups,
// restores) step between them, so writes, searches and `cancel` interleave with a running job.
import init, { CairnDb } from '../wasm/cairn_wasm.js';
import { OpfsStorage } from './opfs-storage.js';
import { memoryStorage } from './memory-storage.js';
import { JobRunner } from './jobs.js';

let db = null;
let storage = null;
let runner = null;
let queue = Promise.resolve();

/** Runs `fn` after everything queued before it (requests and job slices alike). */
function serial(fn) {
  queue = queue.then(fn).catch((e) => console.error('cairndb worker:', e));
  return queue;
}

function errorOf(e) {
  return { message: e?.message ?? String(e), status: e?.status ?? 500 };
}

async function openDb({ name = 'default', storage: kind = 'opfs' }) {
  await init();
  if (kind === 'memory') {
    // File contents in JS buffers, outside the wasm heap (see memory-storage.js).
    db = CairnDb.openWith(memoryStorage());
  } else {
    // One tab at a time: a second one gets a clear error instead of fighting over handles.
    const got = await new Promise((resolve) => {
      navigator.locks.request(`cairndb:${name}`, { ifAvailable: true }, (lock) => {
        if (!lock) { resolve(false); return undefined; }
        resolve(true);
        return new Promise(() => {}); // held for the Worker's life
      });
    });
    if (!got) {
      const e = new Error(`database "${name}" is open in another tab`);
      e.status = 409;
      throw e;
    }
    storage = await OpfsStorage.open(name);
    db = CairnDb.openWith(storage);
  }
  runner = new JobRunner(db, serial, async () => { await storage?.refill(); });
  return { storage: kind === 'memory' ? 'memory' : 'opfs' };
}

/** Answers when job `jobId` ends, posting its progress meanwhile (at most every 30 ms). */
function waitJob(id, jobId) {
  let last = 0;
  runner.wait(jobId, (job) => {
    const now = performance.now();
    if (now - last > 30) { last = now; self.postMessage({ id, progress: { done: job.bytes_done, total: job.bytes_total } }); }
  }).then(
    (job) => self.postMessage({ id, ok: true, value: job }),
    (e) => self.postMessage({ id, ok: false, error: errorOf(e) }),
  );
}

async function handle({ id, method, args }) {
  try {
    let value;
    if (method === 'open') value = await openDb(args[0] ?? {});
    else if (!db) throw Object.assign(new Error('database not open'), { status: 500 });
    else if (method === 'waitJob') { waitJob(id, args[0]); return; }
    else if (method === 'close') {
      runner.stop(); storage?.close(); storage = null; db = null; value = true;
    } else value = db[method](...args);
    if (storage) await storage.refill();
    runner?.kick();
    // Bytes and typed search results move back to the page instead of being copied.
    const transfer = value instanceof Uint8Array ? [value.buffer]
      : value?.similarities instanceof Float32Array ? [value.similarities.buffer, ...(value.counts ? [value.counts.buffer] : [])] : [];
    self.postMessage({ id, ok: true, value }, transfer);
  } catch (e) {
    self.postMessage({ id, ok: false, error: errorOf(e) });
  }
}

self.onmessage = (e) => { serial(() => handle(e.data)); };
