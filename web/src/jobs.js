// Background jobs on a single thread (the browser Worker, Node). A backup or restore is a step
// machine in the core: `db.step(n)` carries it a few storage calls forward. The runner gives it
// a slice of time between requests, through the same queue the requests go through, so writes,
// searches and `cancel` interleave with a running job, and settles whoever waits for a job when
// it ends.

const ENDED = new Set(['completed', 'failed', 'cancelled']);
/** How long one slice may step before requests get their turn again. */
const SLICE_MS = 8;

export class JobRunner {
  /**
   * `db`: the wasm `CairnDb`. `serial(fn)`: runs `fn` (maybe async) after every request queued
   * before it. `afterSlice()`: host work between slices (the OPFS pool tops up its handles).
   */
  constructor(db, serial, afterSlice = async () => {}) {
    this.db = db;
    this.serial = serial;
    this.afterSlice = afterSlice;
    this.waiters = new Map(); // job id -> [{ resolve, reject, onProgress }]
    this.timer = null;
  }

  /** Call after every request: a job may have started or been cancelled. */
  kick() {
    this.settle();
    this.schedule(0);
  }

  /** Resolves with the job record once it has ended (completed, failed or cancelled). */
  wait(jobId, onProgress) {
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(jobId) ?? [];
      list.push({ resolve, reject, onProgress });
      this.waiters.set(jobId, list);
      this.settle();
    });
  }

  schedule(ms) {
    if (this.timer !== null || !this.db) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.serial(() => this.slice());
    }, ms);
  }

  async slice() {
    if (!this.db) return;
    const t0 = performance.now();
    let r;
    do {
      r = this.db.step(16);
    } while (r.running > 0 && r.waitMs == null && performance.now() - t0 < SLICE_MS);
    await this.afterSlice();
    this.settle();
    if (r.running > 0) this.schedule(r.waitMs ?? 0);
  }

  /** Settles the waiters of jobs that ended; tells the others how far theirs got. */
  settle() {
    if (!this.db) return;
    for (const [id, list] of this.waiters) {
      let job;
      try {
        job = this.db.job(id);
      } catch (e) {
        this.waiters.delete(id);
        for (const w of list) w.reject(e);
        continue;
      }
      if (ENDED.has(job.status)) {
        this.waiters.delete(id);
        for (const w of list) w.resolve(job);
      } else {
        for (const w of list) w.onProgress?.(job);
      }
    }
  }

  /** Stops stepping (the database is closing); waiters are told so. */
  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    this.db = null;
    for (const list of this.waiters.values()) {
      for (const w of list) w.reject(Object.assign(new Error('database closed'), { status: 409 }));
    }
    this.waiters.clear();
  }
}
