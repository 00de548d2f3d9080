// Storage for the browser: OPFS through synchronous access handles, in a dedicated Worker.
//
// OPFS has no rename in the standard web API, so files live in a pool (the design of SQLite's
// "opfs-sahpool"): physical files `p<N>.bin` whose first 4096 bytes hold the logical path.
// Creating a file takes a free physical file (sync), renaming rewrites a header, removing frees
// it. Handles are opened once, asynchronously, at start; the pool is topped up between requests.
const HEADER = 4096;
const MAGIC = [0x63, 0x61, 0x69, 0x72]; // "cair"
const enc = new TextEncoder();
const dec = new TextDecoder();

export class OpfsStorage {
  static async open(name, spare = 16) {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle(`cairndb-${name}`, { create: true });
    const s = new OpfsStorage(dir, spare);
    for await (const [fname, h] of dir.entries()) {
      if (h.kind !== 'file' || !/^p\d+\.bin$/.test(fname)) continue;
      const n = Number(fname.slice(1, -4));
      s.next = Math.max(s.next, n + 1);
      const sah = await h.createSyncAccessHandle();
      const logical = s.readHeader(sah);
      if (logical) s.files.set(logical, sah); else s.free.push(sah);
    }
    await s.refill();
    return s;
  }

  constructor(dir, spare) { this.dir = dir; this.spare = spare; this.files = new Map(); this.free = []; this.next = 0; }

  readHeader(sah) {
    if (sah.getSize() < HEADER) return null;
    const h = new Uint8Array(HEADER);
    sah.read(h, { at: 0 });
    if (!MAGIC.every((b, i) => h[i] === b)) return null;
    const len = h[4] | (h[5] << 8);
    return len ? dec.decode(h.subarray(6, 6 + len)) : null;
  }

  writeHeader(sah, logical) {
    const h = new Uint8Array(HEADER);
    h.set(MAGIC, 0);
    const b = logical ? enc.encode(logical) : new Uint8Array(0);
    if (b.length > HEADER - 6) throw new Error(`path too long: ${logical}`);
    h[4] = b.length & 0xff; h[5] = b.length >> 8;
    h.set(b, 6);
    sah.write(h, { at: 0 });
    sah.flush();
  }

  /** Keeps `spare` free handles ready so synchronous creates never wait. */
  async refill() {
    while (this.free.length < this.spare) {
      const fh = await this.dir.getFileHandle(`p${this.next++}.bin`, { create: true });
      const sah = await fh.createSyncAccessHandle();
      sah.truncate(HEADER);
      this.writeHeader(sah, null);
      this.free.push(sah);
    }
  }

  get(p) { const h = this.files.get(p); if (!h) throw new Error(`no such file: ${p}`); return h; }

  size(p) { const h = this.files.get(p); return h ? h.getSize() - HEADER : null; }
  readAt(p, offset, len) {
    const h = this.get(p);
    const buf = new Uint8Array(len);
    const n = h.read(buf, { at: HEADER + offset });
    return buf.subarray(0, n);
  }
  append(p, bytes) {
    if (!this.files.has(p)) this.create(p);
    const h = this.get(p);
    h.write(bytes, { at: h.getSize() });
  }
  create(p) {
    let h = this.files.get(p);
    if (!h) {
      h = this.free.pop();
      if (!h) throw new Error('OPFS pool exhausted');
      this.writeHeader(h, p);
      this.files.set(p, h);
    }
    h.truncate(HEADER);
  }
  sync(p) { this.get(p).flush(); }
  truncate(p, len) { this.get(p).truncate(HEADER + len); }
  rename(from, to) {
    const h = this.get(from);
    if (this.files.has(to)) this.remove(to);
    this.writeHeader(h, to); // one header write is the commit point
    this.files.delete(from);
    this.files.set(to, h);
  }
  remove(p) {
    const h = this.files.get(p);
    if (!h) return;
    this.writeHeader(h, null);
    h.truncate(HEADER);
    h.flush();
    this.files.delete(p);
    this.free.push(h);
  }
  list(prefix) { return [...this.files.keys()].filter((k) => k.startsWith(prefix)); }
  close() { for (const h of [...this.files.values(), ...this.free]) h.close(); }
}
