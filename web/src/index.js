// cairndb: a promise-based façade over the CairnDB wasm core.
// Browser: the database runs in a dedicated Worker on OPFS (or memory).
// Node 20: in-process, in memory or in a directory through node:fs.
// Either way backups, restores and rebuilds run in the background, a slice at a time between
// requests (see jobs.js): `startBackup` answers at once, `waitJob` follows it to its end.

import { JobRunner } from './jobs.js';

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined' && typeof self === 'undefined';

/** An error from the database; `status` mirrors the server's HTTP codes (400/404/409/500/503). */
export class CairnError extends Error {
  constructor(message, status) { super(message); this.name = 'CairnError'; this.status = status; }
}

const METHODS = ['createIndex', 'listIndexes', 'describe', 'deleteIndex', 'upsert', 'get', 'delete', 'deleteByFilter',
  'search', 'startBackup', 'startRestore', 'startRebuild', 'rebuildStatus', 'setBackupRate',
  'createCollection', 'describeCollection', 'jobs', 'job', 'cancel', 'backups', 'exportBackup',
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

/** A collection (Endee's v2 model) over the database's index of the same name: one vector
 *  field and at most one sparse field, named; objects `{id, meta?, filter?, fields: {field: value}}`. */
class Collection {
  constructor(db, name) { this.db = db; this.name = name; }
  async _fields() {
    if (!this._f) {
      const d = await this.db.describeCollection(this.name);
      const dense = d.fields.filter((f) => f.type !== 'sparse');
      this._f = { vector: dense[0]?.name, sparse: d.fields.find((f) => f.type === 'sparse')?.name, further: dense.slice(1).map((f) => f.name) };
    }
    return this._f;
  }
  describe() { return this.db.describeCollection(this.name); }
  /** Inserts or replaces objects; resolves `{upserted}`. */
  async upsert(objects) {
    const f = await this._fields();
    const items = objects.map((o) => {
      const item = { id: o.id, meta: o.meta, filter: o.filter };
      for (const [name, value] of Object.entries(o.fields ?? {})) {
        if (name === f.vector) item.vector = value;
        else if (name === f.sparse) { item.sparse_indices = value.indices ?? value.sparse_indices; item.sparse_values = value.values ?? value.sparse_values; }
        else if (f.further.includes(name)) throw new CairnError(`field ${JSON.stringify(name)}: a collection's second and further dense fields are served by the native server only (not yet in the npm package)`, 400);
        else throw new CairnError(`object ${JSON.stringify(o.id)}: ${JSON.stringify(name)} is not a field of collection ${this.name}`, 400);
      }
      if (!item.vector) throw new CairnError(`object ${JSON.stringify(o.id)}: missing a value for vector field ${JSON.stringify(f.vector)}`, 400);
      return item;
    });
    return { upserted: await this.db.upsert(this.name, items) };
  }
  /** One ranked list per field: `fields` is `{field: {query, limit?, ef_search?}}`; resolves `{results: {field: hits}}`. */
  async search({ fields, filter, ef_search: ef = 128 } = {}) {
    const f = await this._fields();
    const results = {};
    for (const [name, q] of Object.entries(fields ?? {})) {
      const req = { k: q.limit ?? 10, ef: q.ef_search ?? ef, filter };
      if (name === f.vector) req.vector = q.query;
      else if (name === f.sparse) { req.sparse_indices = q.query.indices; req.sparse_values = q.query.values; }
      else throw new CairnError(`${JSON.stringify(name)} is not a field of collection ${this.name}`, 400);
      results[name] = (await this.db.search(this.name, req)).map((h) => ({ id: h.id, similarity: h.similarity, meta: h.meta, filter: h.filter }));
    }
    return { results };
  }
  /** The stored objects among `ids`, `{id, meta, filter, vectors: {field: v}, sparses: {field: {indices, values}}}`. */
  async getObjects(ids) {
    const f = await this._fields();
    const out = [];
    for (const id of ids) {
      try {
        const r = await this.db.get(this.name, String(id));
        const o = { id: r.id, meta: r.meta, filter: r.filter, vectors: { [f.vector]: r.vector }, sparses: {} };
        if (f.sparse) o.sparses[f.sparse] = { indices: r.sparse_indices, values: r.sparse_values };
        out.push(o);
      } catch (e) { if (e.status !== 404) throw e; }
    }
    return out;
  }
  async deleteObject(id) { if (!(await this.db.delete(this.name, [String(id)]))) throw new CairnError(`object ${id} not found`, 404); return { deleted: String(id) }; }
  async deleteByFilter(filter) { return { deleted: await this.db.deleteByFilter(this.name, filter) }; }
  /** Rebuilds the vector field's graph: `[{field, M?, ef_con?}]`; resolves the finished job. */
  async rebuild(specs, opts) {
    const f = await this._fields();
    const s = specs.find((x) => x.field === f.vector);
    if (!s) throw new CairnError(`rebuild needs the vector field ${JSON.stringify(f.vector)}`, 400);
    return this.db.rebuild(this.name, { M: s.M, ef_con: s.ef_con, ...opts });
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
  if (!opts.storage || opts.storage === 'memory') db = wasm.CairnDb.openMemory();
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
  const call = (method, args, onProgress) => new Promise((resolve, reject) => {
    const id = next++;
    pending.set(id, { resolve, reject, onProgress });
    worker.postMessage({ id, method, args });
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
