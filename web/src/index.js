// cairndb: a promise-based façade over the CairnDB wasm core.
// Browser: the database runs in a dedicated Worker on OPFS (or memory).
// Node 20: in-process, in memory or in a directory through node:fs.
// Either way backups, restores and rebuilds run in the background, a slice at a time between
// requests (see jobs.js): `startBackup` answers at once, `waitJob` follows it to its end.

import { memoryStorage } from './memory-storage.js';
import { JobRunner } from './jobs.js';

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined' && typeof self === 'undefined';

/** An error from the database; `status` mirrors the server's HTTP codes (400/404/409/500/503). */
export class CairnError extends Error {
  constructor(message, status) { super(message); this.name = 'CairnError'; this.status = status; }
}

const METHODS = ['createIndex', 'listIndexes', 'describe', 'deleteIndex', 'upsert', 'get', 'delete', 'deleteByFilter',
  'search', 'startBackup', 'startRestore', 'startRebuild', 'rebuildStatus', 'setBackupRate',
  'createCollection', 'describeCollection', 'upsertObjects', 'searchCollection', 'getObjects',
  'startCollectionRebuild', 'jobs', 'job', 'cancel', 'backups', 'exportBackup',
  'backupInfo', 'importBackup', 'deleteBackup', 'checkpoint', 'recoveryNotes'];

/** Resolves with a job that completed; a failed or cancelled one is a `CairnError`. */
function completed(job) {
  if (job.status === 'completed') return job;
  const status = job.status === 'cancelled' ? 409 : 500;
  throw new CairnError(`${job.kind} ${job.job_id} ${job.status}${job.error ? `: ${job.error}` : ''}`, status);
}

/** Fuses per-field results (`collection.search`) by weighted reciprocal rank, as Endee's `rerank`:
 *  a hit at rank r (from 1) in field f adds `fieldWeights[f] / (rrfK + r)`. */
export function rerank(searchResults, { limit = 10, fieldWeights, rrfK = 60 } = {}) {
  const per = searchResults?.results ?? {};
  const fields = Object.keys(per);
  if (!fields.length) throw new CairnError('rerank: no fields to fuse', 400);
  const w = fieldWeights ?? Object.fromEntries(fields.map((f) => [f, 1 / fields.length]));
  const score = new Map(); const hit = new Map();
  for (const f of fields) {
    per[f].forEach((h, i) => { score.set(h.id, (score.get(h.id) ?? 0) + (w[f] ?? 0) / (rrfK + i + 1)); if (!hit.has(h.id)) hit.set(h.id, h); });
  }
  const results = [...score.entries()].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([id, s]) => ({ ...hit.get(id), similarity: s }));
  return { results };
}

/** A collection (Endee's v2 model) over the database's index of the same name: named fields
 *  (vector, sparse, multi_vector), objects `{id, meta?, filter?, fields: {field: value}}`.
 *  Bodies are Endee's v2 shapes, checked by the same core decoders the server uses. */
class Collection {
  constructor(db, name) { this.db = db; this.name = name; }
  describe() { return this.db.describeCollection(this.name); }
  /** Inserts or replaces objects; resolves `{upserted}`. */
  async upsert(objects) {
    return { upserted: await this.db.upsertObjects(this.name, objects) };
  }
  /** One ranked list per field: `fields` is `{field: {query, limit?, ef_search?}}`; resolves `{results: {field: hits}}`. */
  search({ fields, filter, filter_params, ef_search } = {}) {
    const list = Object.entries(fields ?? {}).map(([name, q]) => ({ [name]: { ef_search, ...q } }));
    return this.db.searchCollection(this.name, { fields: list, filter, filter_params });
  }
  /** The stored objects among `ids`: `{id, meta, filter, vectors, sparses, multi_vectors}` (missing ids left out). */
  getObjects(ids) { return this.db.getObjects(this.name, ids.map(String)); }
  async deleteObject(id) { if (!(await this.db.delete(this.name, [String(id)]))) throw new CairnError(`object ${id} not found`, 404); return { deleted: String(id) }; }
  async deleteByFilter(filter) { return { deleted: await this.db.deleteByFilter(this.name, filter) }; }
  /** Rebuilds dense fields' graphs in one job: `[{field, M?, ef_con?}, …]`; resolves the finished job. */
  async rebuild(specs, { onProgress } = {}) {
    const job = await this.db.startCollectionRebuild(this.name, { fields: specs });
    return completed(await this.db.waitJob(job.job_id, { onProgress }));
  }
}

class Database {
  constructor(call, close) {
    this._call = call;
    this._close = close;
    for (const m of METHODS) {
      if (!this[m]) this[m] = (...args) => this._call(m, args);
    }
  }
  /** Resolves with job `id` once it has ended (completed, failed or cancelled). `onProgress({done, total})`. */
  waitJob(id, { onProgress } = {}) { return this._call('waitJob', [id], onProgress); }

  /**
   * Dense queries in one call (one Worker message each way, no JSON): `queries` is an array of
   * vectors or one `Float32Array` of n × dim values. Resolves one `{ids, similarities}` per
   * query (ids best first, similarities a `Float32Array`).
   */
  async searchMany(index, queries, { k = 10, ef = 0, filter } = {}) {
    // A fresh buffer of our own, so it can be transferred without detaching the caller's.
    const flat = queries instanceof Float32Array ? queries.slice() : Float32Array.from(queries.flatMap((q) => Array.from(q)));
    const f = filter === undefined ? '' : (typeof filter === 'string' ? filter : JSON.stringify(filter));
    const r = await this._call('searchMany', [index, flat, k, ef, f], undefined, [flat.buffer]);
    const out = [];
    for (let q = 0, at = 0; q < r.counts.length; at += r.counts[q], q++) {
      out.push({ ids: r.ids.slice(at, at + r.counts[q]), similarities: r.similarities.subarray(at, at + r.counts[q]) });
    }
    return out;
  }
  /** Runs a backup job; resolves with the finished job. `onProgress({done, total})`. */
  async backup(index, name, { onProgress } = {}) {
    const job = await this.startBackup(index, name);
    return completed(await this.waitJob(job.job_id, { onProgress }));
  }
  /** Restores an archive into a new index; resolves with the finished job. */
  async restore(backup, target, { onProgress } = {}) {
    const job = await this.startRestore(backup, target);
    return completed(await this.waitJob(job.job_id, { onProgress }));
  }
  /** Rebuilds an index's graph with new `M` / `ef_con` (either may be left out); resolves with the finished job.
   *  Searches and writes go on during it; `onProgress({done, total})` counts vectors placed. */
  async rebuild(index, { M, ef_con, onProgress } = {}) {
    const job = await this.startRebuild(index, M, ef_con);
    return completed(await this.waitJob(job.job_id, { onProgress }));
  }
  /** A collection (Endee's v2 model) by name: any index is one. */
  collection(name) { return new Collection(this, name); }
  /** Lists collections as Endee's v2 shows them. */
  async listCollections() {
    return Promise.all((await this.listIndexes()).map((i) => this.describeCollection(i.name)));
  }
  /** Stores an archive given as bytes, a Blob or a File, after validating it whole. */
  async importBackup(name, data) {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(await data.arrayBuffer());
    return this._call('importBackup', [name, bytes]);
  }
  /** An archive as a Blob (browser download). */
  async exportBackupBlob(name) {
    return new Blob([await this._call('exportBackup', [name])], { type: 'application/x-tar' });
  }
  close() { return this._close(); }
}

async function openNode(opts) {
  const { readFileSync } = await import('node:fs');
  const wasm = await import('../wasm/cairn_wasm.js');
  await wasm.default({ module_or_path: readFileSync(new URL('../wasm/cairn_wasm_bg.wasm', import.meta.url)) });
  let db;
  if (!opts.storage || opts.storage === 'memory') db = wasm.CairnDb.openWith(memoryStorage());
  else if (opts.storage.dir) {
    const { nodeFsStorage } = await import('./node-storage.js');
    db = wasm.CairnDb.openWith(nodeFsStorage(opts.storage.dir));
  } else throw new CairnError(`unknown storage ${JSON.stringify(opts.storage)} (use "memory" or {dir})`, 400);
  // In-process calls are synchronous, so a job slice never runs inside one.
  const runner = new JobRunner(db, (fn) => fn());
  const asError = (e) => (e instanceof CairnError ? e : new CairnError(e?.message ?? String(e), e?.status ?? 500));
  const call = async (method, args, onProgress) => {
    try {
      if (method === 'waitJob') {
        return await runner.wait(args[0], (job) => onProgress?.({ done: job.bytes_done, total: job.bytes_total }));
      }
      const value = db[method](...args);
      runner.kick();
      return value;
    } catch (e) {
      throw asError(e);
    }
  };
  return new Database(call, async () => { runner.stop(); db.free(); });
}

async function openBrowser(opts) {
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  let next = 1;
  const pending = new Map();
  worker.onmessage = ({ data }) => {
    const p = pending.get(data.id);
    if (!p) return;
    if (data.progress) { p.onProgress?.(data.progress); return; }
    pending.delete(data.id);
    if (data.ok) p.resolve(data.value); else p.reject(new CairnError(data.error.message, data.error.status));
  };
  // A Worker that fails to load (or dies) fails every call, now and later, instead of
  // leaving them waiting forever.
  let broken = null;
  const failAll = (message) => {
    broken = new CairnError(message, 500);
    for (const p of pending.values()) p.reject(broken);
    pending.clear();
  };
  worker.onerror = (e) => { e.preventDefault?.(); failAll(`the CairnDB worker failed: ${e.message || 'it could not be loaded'}`); };
  worker.onmessageerror = () => failAll('a message from the CairnDB worker could not be read');
  // Typed arrays the caller built for this call only (`transfer`) move to the Worker, not copied.
  const call = (method, args, onProgress, transfer = []) => new Promise((resolve, reject) => {
    if (broken) { reject(broken); return; }
    const id = next++;
    pending.set(id, { resolve, reject, onProgress });
    worker.postMessage({ id, method, args }, transfer);
  });
  try {
    await call('open', [{ name: opts.name ?? 'default', storage: opts.storage ?? 'opfs' }]);
  } catch (e) { worker.terminate(); throw e; }
  return new Database(call, async () => { await call('close', []); worker.terminate(); });
}

/**
 * Opens a database. Browser: `{name?, storage?: 'opfs' | 'memory'}` (default OPFS).
 * Node: `{storage?: 'memory' | {dir: string}}` (default memory).
 */
export function open(opts = {}) {
  return isNode ? openNode(opts) : openBrowser(opts);
}
