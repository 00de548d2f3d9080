// The dedicated Worker that owns the database and every OPFS handle. The page talks to it
// through src/index.js. Requests run one at a time, in order.
import init, { CairnDb } from '../wasm/cairn_wasm.js';
import { OpfsStorage } from './opfs-storage.js';

let db = null;
let storage = null;
let queue = Promise.resolve();

function errorOf(e) {
  return { message: e?.message ?? String(e), status: e?.status ?? 500 };
}

async function openDb({ name = 'default', storage: kind = 'opfs' }) {
  await init();
  if (kind === 'memory') {
    db = CairnDb.openMemory();
    return { storage: 'memory' };
  }
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
  return { storage: 'opfs' };
}

async function handle({ id, method, args }) {
  try {
    let value;
    if (method === 'open') value = await openDb(args[0] ?? {});
    else if (!db) throw Object.assign(new Error('database not open'), { status: 500 });
    else if (method === 'backup') {
      let last = 0;
      value = db.backup(args[0], args[1], (done, total) => {
        const now = performance.now();
        if (now - last > 30 || done === total) { last = now; self.postMessage({ id, progress: { done, total } }); }
      });
    } else if (method === 'close') {
      storage?.close(); db = null; value = true;
    } else value = db[method](...args);
    if (storage) await storage.refill();
    const transfer = value instanceof Uint8Array ? [value.buffer] : [];
    self.postMessage({ id, ok: true, value }, transfer);
  } catch (e) {
    self.postMessage({ id, ok: false, error: errorOf(e) });
  }
}

self.onmessage = (e) => { queue = queue.then(() => handle(e.data)); };
