// Storage for the browser: OPFS through synchronous access handles, in a dedicated Worker.
//
// OPFS has no rename in the standard web API, so files live in a pool (the design of SQLite's
// "opfs-sahpool"): physical files `p<N>.bin` whose first 4096 bytes are a header naming the
// logical path. Creating a file takes a free physical file, removing frees it, and renaming is
// one header write — the commit point:
//
//   header = "cai2" | seq (u64 LE) | path length (u16 LE) | path (UTF-8) | ... | CRC-32 of the rest
//
// Every header write takes a new, higher sequence number. A rename over an existing file
// writes the moving file's header first and frees the replaced file after; if the Worker dies
// in between, both name the path and at the next open the newest header wins and the loser is
// freed. A torn header (an OS crash mid-write) fails its CRC and reads as free: the rename or
// create it belonged to did not happen, and the file it would have replaced is still there.
// Headers of the first version ("cair", no sequence or CRC) still read, as sequence 0.
// Handles are opened once, asynchronously, at start; the pool is topped up between requests.
const HEADER = 4096;
const MAGIC = [0x63, 0x61, 0x69, 0x32]; // "cai2"
const MAGIC_V1 = [0x63, 0x61, 0x69, 0x72]; // "cair"
const enc = new TextEncoder();
const dec = new TextDecoder();

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Reads a header: `{ logical, seq }` for a file in use, null for a free or unreadable one. */
export function parseHeader(h) {
  const v = new DataView(h.buffer, h.byteOffset, h.byteLength);
  if (MAGIC.every((b, i) => h[i] === b)) {
    if (v.getUint32(HEADER - 4, true) !== crc32(h.subarray(0, HEADER - 4))) return null;
    const seq = v.getUint32(4, true) + v.getUint32(8, true) * 2 ** 32;
    const len = v.getUint16(12, true);
    if (!len || 14 + len > HEADER - 4) return null;
    return { logical: dec.decode(h.subarray(14, 14 + len)), seq };
  }
  if (MAGIC_V1.every((b, i) => h[i] === b)) {
    const len = h[4] | (h[5] << 8);
    return len && len <= HEADER - 6 ? { logical: dec.decode(h.subarray(6, 6 + len)), seq: 0 } : null;
  }
  return null;
}

/** A header naming `logical` (null: free) with sequence number `seq`. */
export function makeHeader(logical, seq) {
  const h = new Uint8Array(HEADER);
  const v = new DataView(h.buffer);
  h.set(MAGIC, 0);
  v.setUint32(4, seq % 2 ** 32, true);
  v.setUint32(8, Math.floor(seq / 2 ** 32), true);
  const b = logical ? enc.encode(logical) : new Uint8Array(0);
  if (14 + b.length > HEADER - 4) throw new Error(`path too long: ${logical}`);
  v.setUint16(12, b.length, true);
  h.set(b, 14);
  v.setUint32(HEADER - 4, crc32(h.subarray(0, HEADER - 4)), true);
  return h;
}

export class OpfsStorage {
  static async open(name, spare = 16) {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle(`cairndb-${name}`, { create: true });
    const s = new OpfsStorage(dir, spare);
    const claims = new Map(); // logical path -> [{ sah, seq }]
    const opened = [];
    try {
      for await (const [fname, h] of dir.entries()) {
        if (h.kind !== 'file' || !/^p\d+\.bin$/.test(fname)) continue;
        const n = Number(fname.slice(1, -4));
        s.next = Math.max(s.next, n + 1);
        const sah = await h.createSyncAccessHandle();
        opened.push(sah);
        const hdr = s.readHeader(sah);
        if (!hdr) { s.free.push(sah); continue; }
        s.seq = Math.max(s.seq, hdr.seq);
        if (!claims.has(hdr.logical)) claims.set(hdr.logical, []);
        claims.get(hdr.logical).push({ sah, seq: hdr.seq });
      }
    } catch (e) {
      // A handle still held elsewhere (a Worker that is going away): leave nothing open, so
      // the caller can try again.
      for (const sah of opened) sah.close();
      throw e;
    }
    // A rename interrupted after its commit leaves the replaced file still naming the path:
    // the newest header wins, the others are freed.
    for (const [logical, cs] of claims) {
      cs.sort((a, b) => b.seq - a.seq);
      s.files.set(logical, cs[0].sah);
      for (const loser of cs.slice(1)) s.release(loser.sah);
    }
    await s.refill();
    return s;
  }

  constructor(dir, spare) { this.dir = dir; this.spare = spare; this.files = new Map(); this.free = []; this.next = 0; this.seq = 0; }

  readHeader(sah) {
    if (sah.getSize() < HEADER) return null;
    const h = new Uint8Array(HEADER);
    sah.read(h, { at: 0 });
    return parseHeader(h);
  }

  /** One durable header write, with the next sequence number. */
  writeHeader(sah, logical) {
    this.seq += 1;
    sah.write(makeHeader(logical, this.seq), { at: 0 });
    sah.flush();
  }

  /** Frees a physical file: header cleared (flushed), data cut. */
  release(sah) {
    this.writeHeader(sah, null);
    sah.truncate(HEADER);
    sah.flush();
    this.free.push(sah);
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
    const replaced = this.files.get(to);
    h.flush(); // the data first, then the header that publishes it
    this.writeHeader(h, to); // the commit point: a newer header for `to` than the replaced one's
    this.files.delete(from);
    this.files.set(to, h);
    if (replaced && replaced !== h) this.release(replaced);
  }
  remove(p) {
    const h = this.files.get(p);
    if (!h) return;
    this.files.delete(p);
    this.release(h);
  }
  list(prefix) { return [...this.files.keys()].filter((k) => k.startsWith(prefix)); }
  close() { for (const h of [...this.files.values(), ...this.free]) h.close(); }
}
