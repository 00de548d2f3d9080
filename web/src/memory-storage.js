// Storage in JS memory, for `storage: 'memory'`: file contents (the log, checkpoints, archives)
// live in JS buffers outside the wasm heap. Wasm linear memory never shrinks, so a heap that
// held them would keep the high-water mark of every superseded checkpoint; here a removed
// file's buffer is simply garbage. Same semantics as the core's MemStorage.
export function memoryStorage() {
  const files = new Map(); // path → { buf: Uint8Array, len }
  const get = (p) => {
    const f = files.get(p);
    if (!f) throw Object.assign(new Error(`no such file: ${p}`), { code: 'ENOENT' });
    return f;
  };
  return {
    size(p) { return files.get(p)?.len ?? null; },
    readAt(p, offset, len) {
      const f = get(p);
      const start = Math.min(offset, f.len);
      return f.buf.slice(start, Math.min(start + len, f.len));
    },
    append(p, bytes) {
      let f = files.get(p);
      if (!f) { f = { buf: new Uint8Array(Math.max(256, bytes.length)), len: 0 }; files.set(p, f); }
      if (f.len + bytes.length > f.buf.length) {
        // Grow by half again: amortised appends without doubling a large checkpoint's buffer.
        const grown = new Uint8Array(Math.max(Math.ceil(f.buf.length * 1.5), f.len + bytes.length));
        grown.set(f.buf.subarray(0, f.len));
        f.buf = grown;
      }
      // `bytes` is a view into wasm memory: copied here, never kept.
      f.buf.set(bytes, f.len);
      f.len += bytes.length;
    },
    create(p) { files.set(p, { buf: new Uint8Array(256), len: 0 }); },
    sync() {},
    truncate(p, len) { const f = get(p); f.len = Math.min(f.len, len); },
    rename(from, to) { const f = get(from); files.delete(from); files.set(to, f); },
    remove(p) { files.delete(p); },
    list(prefix) { return [...files.keys()].filter((k) => k.startsWith(prefix)); },
  };
}
