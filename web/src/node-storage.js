// Storage for Node: a directory on disk, through node:fs (synchronous calls, fsync on sync()).
import * as fs from 'node:fs';
import * as path from 'node:path';

export function nodeFsStorage(root) {
  fs.mkdirSync(root, { recursive: true });
  const abs = (p) => {
    if (p.split('/').some((c) => c === '..' || c === '')) throw new Error(`bad path ${p}`);
    return path.join(root, ...p.split('/'));
  };
  const ensureDir = (p) => fs.mkdirSync(path.dirname(p), { recursive: true });
  const fsyncDir = (d) => { const fd = fs.openSync(d, 'r'); try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); } };
  // Read handles stay open between reads (a restore or a load reads a file 1 MiB at a time);
  // a file renamed, recreated or removed has its handle closed first.
  const readers = new Map();
  const reader = (p) => {
    let fd = readers.get(p);
    if (fd === undefined) { fd = fs.openSync(abs(p), 'r'); readers.set(p, fd); }
    return fd;
  };
  const forget = (p) => {
    for (const [k, fd] of readers) {
      if (k === p || k.startsWith(`${p}/`)) { readers.delete(k); try { fs.closeSync(fd); } catch { /* closed */ } }
    }
  };
  return {
    size(p) { try { return fs.statSync(abs(p)).size; } catch (e) { if (e.code === 'ENOENT') return null; throw e; } },
    readAt(p, offset, len) {
      const buf = Buffer.alloc(len);
      const n = fs.readSync(reader(p), buf, 0, len, offset);
      return new Uint8Array(buf.buffer, buf.byteOffset, n);
    },
    append(p, bytes) { const a = abs(p); ensureDir(a); fs.appendFileSync(a, bytes); },
    create(p) { forget(p); const a = abs(p); ensureDir(a); fs.writeFileSync(a, new Uint8Array(0)); },
    sync(p) { const a = abs(p); const fd = fs.openSync(a, 'r+'); try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); } fsyncDir(path.dirname(a)); },
    truncate(p, len) { fs.truncateSync(abs(p), len); },
    rename(from, to) { forget(from); forget(to); const t = abs(to); ensureDir(t); fs.renameSync(abs(from), t); fsyncDir(path.dirname(t)); },
    remove(p) { forget(p); fs.rmSync(abs(p), { force: true }); },
    list(prefix) {
      const out = [];
      const walk = (dir, rel) => {
        let entries;
        try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
        for (const e of entries) {
          const r = rel ? `${rel}/${e.name}` : e.name;
          if (e.isDirectory()) walk(path.join(dir, e.name), r);
          else if (r.startsWith(prefix)) out.push(r);
        }
      };
      walk(root, '');
      return out;
    },
  };
}
