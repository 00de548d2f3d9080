//! [`Storage`] over a JS object with synchronous methods (OPFS pool, `node:fs`, tests).

use cairn_core::Storage;
use std::io;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// The JS storage object.
    pub type JsStorageObj;
    #[wasm_bindgen(method, catch)]
    fn size(this: &JsStorageObj, path: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = readAt)]
    fn read_at(
        this: &JsStorageObj,
        path: &str,
        offset: f64,
        len: f64,
    ) -> Result<js_sys::Uint8Array, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn append(this: &JsStorageObj, path: &str, bytes: &[u8]) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn create(this: &JsStorageObj, path: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn sync(this: &JsStorageObj, path: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn truncate(this: &JsStorageObj, path: &str, len: f64) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn rename(this: &JsStorageObj, from: &str, to: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn remove(this: &JsStorageObj, path: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn list(this: &JsStorageObj, prefix: &str) -> Result<Vec<String>, JsValue>;
}

/// A [`Storage`] that calls a JS object.
pub struct JsStorage {
    obj: JsStorageObj,
}

fn io_err(e: JsValue) -> io::Error {
    let msg = js_sys::Reflect::get(&e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"));
    io::Error::other(msg)
}

impl JsStorage {
    /// Wraps a JS storage object.
    pub fn new(obj: JsValue) -> Self {
        Self {
            obj: obj.unchecked_into(),
        }
    }
}

impl Storage for JsStorage {
    fn size(&mut self, path: &str) -> io::Result<Option<u64>> {
        let v = self.obj.size(path).map_err(io_err)?;
        Ok(v.as_f64().map(|n| n as u64))
    }
    fn read_at(&mut self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        Ok(self
            .obj
            .read_at(path, offset as f64, len as f64)
            .map_err(io_err)?
            .to_vec())
    }
    fn append(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.obj.append(path, bytes).map_err(io_err)
    }
    fn create(&mut self, path: &str) -> io::Result<()> {
        self.obj.create(path).map_err(io_err)
    }
    fn sync(&mut self, path: &str) -> io::Result<()> {
        self.obj.sync(path).map_err(io_err)
    }
    fn truncate(&mut self, path: &str, len: u64) -> io::Result<()> {
        self.obj.truncate(path, len as f64).map_err(io_err)
    }
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.obj.rename(from, to).map_err(io_err)
    }
    fn remove(&mut self, path: &str) -> io::Result<()> {
        self.obj.remove(path).map_err(io_err)
    }
    fn list(&mut self, prefix: &str) -> io::Result<Vec<String>> {
        self.obj.list(prefix).map_err(io_err)
    }
}
