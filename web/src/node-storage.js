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
  return {
    size(p) { try { return fs.statSync(abs(p)).size; } catch (e) { if (e.code === 'ENOENT') return null; throw e; } },
    readAt(p, offset, len) {
      const fd = fs.openSync(abs(p), 'r');
      try {
        const buf = Buffer.alloc(len);
        const n = fs.readSync(fd, buf, 0, len, offset);
        return new Uint8Array(buf.buffer, buf.byteOffset, n);
      } finally { fs.closeSync(fd); }
    },
    append(p, bytes) { const a = abs(p); ensureDir(a); fs.appendFileSync(a, bytes); },
    create(p) { const a = abs(p); ensureDir(a); fs.writeFileSync(a, new Uint8Array(0)); },
    sync(p) { const a = abs(p); const fd = fs.openSync(a, 'r+'); try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); } fsyncDir(path.dirname(a)); },
    truncate(p, len) { fs.truncateSync(abs(p), len); },
    rename(from, to) { const t = abs(to); ensureDir(t); fs.renameSync(abs(from), t); fsyncDir(path.dirname(t)); },
    remove(p) { fs.rmSync(abs(p), { force: true }); },
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
