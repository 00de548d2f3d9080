//! What bad input — from the network or from a file on disk — must not be able to do: delete
//! data, crash the server or keep it from starting, or cost more than its size.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

mod common;
use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

fn count(c: &reqwest::blocking::Client, s: &Server, name: &str) -> u64 {
    let i = get_json(c, &s.url(&format!("/index/{name}/info")));
    i["total_elements"].as_u64().unwrap()
}

/// Asserts a JSON `{"error": ...}` answer with `status`; returns the message.
fn json_error(r: reqwest::blocking::Response, status: u16) -> String {
    assert_eq!(r.status(), status);
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(ct.as_deref(), Some("application/json"));
    let v: Value = r.json().unwrap();
    v["error"].as_str().unwrap().to_string()
}

#[test]
fn a_delete_with_an_empty_missing_or_null_filter_deletes_nothing() {
    let dir = tempdir("delete-empty");
    let s = Server::start(&dir, None);
    let c = client();
    create_index(&c, &s, "ix", 4, "float32");
    insert_range(&c, &s, "ix", "v", 0..10, 4);
    for body in [
        json!({"filter": []}),
        json!({"filter": "[]"}),
        json!({"filter": " [ ] "}),
        json!({"filter": null}),
        json!({"filter": ""}),
        json!({}),
    ] {
        let r = c
            .delete(s.url("/index/ix/vectors/delete"))
            .json(&body)
            .send()
            .unwrap();
        let msg = json_error(r, 400);
        assert!(msg.contains("filter"), "{body}: {msg}");
        assert_eq!(count(&c, &s, "ix"), 10, "{body} deleted vectors");
    }
    // A real filter still deletes what it matches.
    let r = c
        .delete(s.url("/index/ix/vectors/delete"))
        .json(&json!({"filter": [{"nope": {"$eq": 1}}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(count(&c, &s, "ix"), 10);
}

/// Frames of a checkpoint or log: `[len u32][crc u32][payload]`.
fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(bytes[at + 8..at + 8 + len].to_vec());
        at += 8 + len;
    }
    out
}

/// One log/checkpoint frame, as the core writes it.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    cairn_core::record::frame_into(payload, &mut out);
    out
}

fn mp_decode(b: &[u8]) -> rmpv::Value {
    rmpv::decode::read_value(&mut &b[..]).unwrap()
}

fn mp_encode(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

/// The entries of an archive: manifest JSON, checkpoint bytes, log bytes.
fn unpack(archive: &[u8]) -> (Value, Vec<u8>, Vec<u8>) {
    let mut a = tar::Archive::new(archive);
    let mut parts = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        parts.push(v);
    }
    (
        serde_json::from_slice(&parts[0]).unwrap(),
        parts[1].clone(),
        parts[2].clone(),
    )
}

/// An archive with correct digests around the given manifest, checkpoint and log.
fn repack(mut manifest: Value, ck: &[u8], log: &[u8]) -> Vec<u8> {
    for (i, data) in [ck, log].into_iter().enumerate() {
        manifest["entries"][i]["size"] = json!(data.len());
        manifest["entries"][i]["sha256"] = json!(hex::encode(Sha256::digest(data)));
    }
    let m = serde_json::to_vec(&manifest).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("cairn-backup.json", &m[..]),
        ("index/checkpoint.bin", ck),
        ("index/log.bin", log),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Rewrites the checkpoint's header frame (an rmp array: format, version, params, slots, free,
/// graph [entry, max_level, rng], originals) and optionally the first slot frame.
fn tamper_checkpoint(
    ck: &[u8],
    header: impl FnOnce(&mut Vec<rmpv::Value>),
    slots: impl FnOnce(&mut Vec<rmpv::Value>),
) -> Vec<u8> {
    let mut fr = frames(ck);
    let mut h = match mp_decode(&fr[0]) {
        rmpv::Value::Array(a) => a,
        other => panic!("header {other}"),
    };
    header(&mut h);
    fr[0] = mp_encode(&rmpv::Value::Array(h));
    let mut s = match mp_decode(&fr[1]) {
        rmpv::Value::Array(a) => a,
        other => panic!("slots {other}"),
    };
    slots(&mut s);
    fr[1] = mp_encode(&rmpv::Value::Array(s));
    fr.iter().flat_map(|p| frame(p)).collect()
}

fn graph_field(h: &mut [rmpv::Value], i: usize, v: rmpv::Value) {
    match &mut h[5] {
        rmpv::Value::Array(g) => g[i] = v,
        other => panic!("graph {other}"),
    }
}

/// The first array of four numbers (a vector of the 4-d test index), found depth first.
fn first_vector(v: &mut rmpv::Value) -> Option<&mut Vec<rmpv::Value>> {
    let is_vector = |a: &[rmpv::Value]| a.len() == 4 && a.iter().all(|x| x.is_f32() || x.is_f64());
    match v {
        rmpv::Value::Array(a) => {
            if is_vector(a) {
                Some(a)
            } else {
                a.iter_mut().find_map(first_vector)
            }
        }
        rmpv::Value::Map(m) => m.iter_mut().find_map(|(_, x)| first_vector(x)),
        _ => None,
    }
}

fn shorten_first_vector(v: &mut rmpv::Value) -> bool {
    first_vector(v).map(|a| a.truncate(1)).is_some()
}

fn nan_first_vector(v: &mut rmpv::Value) -> bool {
    first_vector(v)
        .map(|a| a[2] = rmpv::Value::F32(f32::NAN))
        .is_some()
}

fn backup_bytes(c: &reqwest::blocking::Client, s: &Server, index: &str, name: &str) -> Vec<u8> {
    assert_eq!(backup_and_wait(c, s, index, name)["status"], "completed");
    c.get(s.url(&format!("/backups/{name}/download")))
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec()
}

fn upload(
    c: &reqwest::blocking::Client,
    s: &Server,
    name: &str,
    bytes: Vec<u8>,
) -> reqwest::blocking::Response {
    c.post(s.url(&format!("/backups/upload?name={name}")))
        .header("content-type", "application/x-tar")
        .body(bytes)
        .send()
        .unwrap()
}

#[test]
fn archives_whose_contents_are_not_a_valid_index_are_refused_at_upload_and_at_restore() {
    let dir = tempdir("crafted");
    let s = Server::start(&dir, None);
    let c = client();
    create_index(&c, &s, "src", 4, "float32");
    insert_range(&c, &s, "src", "v", 0..40, 4);
    // A restored index has every vector in its checkpoint and an empty log; its backup is the
    // case that once restored (201) and then crashed the next insert, and every restart after.
    let first = backup_bytes(&c, &s, "src", "first");
    let r = c
        .post(s.url("/backups/first/restore"))
        .json(&json!({"target_index_name": "mid"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    // A restore publishes the archived log as it is; a clean stop folds it into a checkpoint.
    drop(s);
    let s = Server::start(&dir, None);
    let good = backup_bytes(&c, &s, "mid", "good");
    let (manifest, ck, log) = unpack(&good);
    assert!(log.is_empty() && ck.len() > 1000);
    let nil = rmpv::Value::Nil;
    let int = |x: u64| rmpv::Value::from(x);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "entry-out-of-range",
            tamper_checkpoint(&ck, |h| graph_field(h, 0, int(1_000_000)), |_| {}),
        ),
        (
            "level-above-entry",
            tamper_checkpoint(&ck, |h| graph_field(h, 1, int(9)), |_| {}),
        ),
        (
            "no-entry-point",
            tamper_checkpoint(&ck, |h| graph_field(h, 0, nil.clone()), |_| {}),
        ),
        (
            "free-list-unknown-slot",
            tamper_checkpoint(
                &ck,
                |h| h[4] = rmpv::Value::Array(vec![int(100), int(100)]),
                |_| {},
            ),
        ),
        (
            "nan-vector",
            tamper_checkpoint(
                &ck,
                |_| {},
                |slots| {
                    let rmpv::Value::Array(blob) = &mut slots[0] else {
                        panic!()
                    };
                    let rmpv::Value::Binary(code) = &mut blob[1] else {
                        panic!()
                    };
                    code[..4].copy_from_slice(&f32::NAN.to_le_bytes());
                },
            ),
        ),
        (
            "link-out-of-range",
            tamper_checkpoint(
                &ck,
                |_| {},
                |slots| {
                    let rmpv::Value::Array(blob) = &mut slots[0] else {
                        panic!()
                    };
                    let rmpv::Value::Array(links) = &mut blob[2] else {
                        panic!()
                    };
                    links[1] = int(1);
                    links[2] = int(999_999);
                },
            ),
        ),
    ];
    for (name, ck) in cases.iter_mut() {
        *ck = repack(manifest.clone(), ck, &log);
        let _ = name;
    }
    let mut wrong_dim = manifest.clone();
    wrong_dim["params"]["dim"] = json!(8);
    cases.push(("manifest-dim", repack(wrong_dim, &ck, &log)));
    let mut wrong_prec = manifest.clone();
    wrong_prec["params"]["precision"] = json!("int8");
    cases.push(("manifest-precision", repack(wrong_prec, &ck, &log)));
    let mut wrong_count = manifest.clone();
    wrong_count["vector_count"] = json!(41);
    cases.push(("vector-count", repack(wrong_count, &ck, &log)));
    // The source's log holds the insert as one record: the same record with a vector of the
    // wrong dimension, correctly framed, on top of the source's (empty) checkpoint.
    let (src_manifest, src_ck, src_log) = unpack(&first);
    let mut rec = mp_decode(&frames(&src_log)[0]);
    assert!(shorten_first_vector(&mut rec), "no vector in {rec}");
    cases.push((
        "log-record-wrong-dim",
        repack(src_manifest.clone(), &src_ck, &frame(&mp_encode(&rec))),
    ));
    let mut nan = mp_decode(&frames(&src_log)[0]);
    assert!(nan_first_vector(&mut nan));
    cases.push((
        "log-record-nan",
        repack(src_manifest, &src_ck, &frame(&mp_encode(&nan))),
    ));
    // Uploads: 400 naming the problem, nothing published, nothing left behind.
    for (name, bytes) in &cases {
        let msg = json_error(upload(&c, &s, name, bytes.clone()), 400);
        assert!(msg.contains("invalid backup archive"), "{name}: {msg}");
    }
    let list = get_json(&c, &s.url("/backups"));
    assert_eq!(list, json!(["first", "good"]));
    assert_eq!(
        std::fs::read_dir(dir.join("backups/.tmp")).unwrap().count(),
        0
    );
    // The same archives placed on disk by hand: restore refuses them, sync and async, leaves
    // no job in progress, no index, and the target name free.
    drop(s);
    for (name, bytes) in &cases {
        std::fs::write(dir.join(format!("backups/{name}.tar")), bytes).unwrap();
    }
    let s = Server::start(&dir, None);
    for (name, _) in &cases {
        let r = c
            .post(s.url(&format!("/backups/{name}/restore")))
            .json(&json!({"target_index_name": "dst"}))
            .send()
            .unwrap();
        let msg = json_error(r, 400);
        assert!(msg.contains("invalid backup archive"), "{name}: {msg}");
        let r: Value = c
            .post(s.url(&format!("/backups/{name}/restore")))
            .json(&json!({"target_index_name": "dst", "async": true}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let j = wait_job(&c, &s, r["job_id"].as_str().unwrap());
        assert_eq!(j["status"], "failed", "{name}: {j}");
        assert_eq!(
            c.get(s.url("/index/dst/info")).send().unwrap().status(),
            404
        );
    }
    let jobs = get_json(&c, &s.url("/backups/jobs"));
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["status"] != "in_progress")
    );
    assert_eq!(
        std::fs::read_dir(dir.join("indexes/.tmp")).unwrap().count(),
        0
    );
    create_index(&c, &s, "dst", 4, "float32");
    // The good archive restores, and the restored index takes writes and searches.
    let r = c
        .post(s.url("/backups/good/restore"))
        .json(&json!({"target_index_name": "ok"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    insert_range(&c, &s, "ok", "w", 0..5, 4);
    assert_eq!(count(&c, &s, "ok"), 45);
}

#[test]
fn tar_extension_headers_and_oversized_uploads_are_refused_without_being_buffered() {
    let dir = tempdir("upload-limits");
    let s = Server::start_args(&dir, &["--max-upload-mib", "1"]);
    let c = client();
    create_index(&c, &s, "src", 4, "float32");
    let (manifest, _, _) = unpack(&backup_bytes(&c, &s, "src", "real"));
    let manifest = serde_json::to_vec(&manifest).unwrap();
    // After a valid manifest, a GNU long-name entry of 600 KiB: refused as a non-regular entry,
    // never read into memory.
    let mut long = Vec::new();
    {
        let mut b = tar::Builder::new(&mut long);
        let mut h = tar::Header::new_ustar();
        h.set_size(manifest.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "cairn-backup.json", &manifest[..])
            .unwrap();
        let name = "x".repeat(600 << 10);
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, &name, &b"y"[..]).unwrap();
        b.finish().unwrap();
    }
    let msg = json_error(upload(&c, &s, "longname", long), 400);
    assert!(msg.contains("@LongLink"), "{msg}");
    // Over the limit: 413, by its declared length and by its streamed length.
    // By the declared length alone, before a byte of body: 413 JSON.
    {
        use std::io::Write;
        let mut t = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        write!(
            t,
            "POST /api/v1/backups/upload?name=declared HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/x-tar\r\nContent-Length: 2097152\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 512];
        let n = t.read(&mut head).unwrap();
        let head = String::from_utf8_lossy(&head[..n]);
        assert!(head.starts_with("HTTP/1.1 413"), "{head}");
        assert!(
            head.contains("application/json") && head.contains("limit"),
            "{head}"
        );
    }
    // The server answers before reading the body and may close the connection while the
    // client still sends: when an answer arrives it is 413 JSON.
    let big = c
        .post(s.url("/backups/upload?name=big"))
        .header("content-type", "application/x-tar")
        .body(vec![0u8; 2 << 20])
        .send();
    if let Ok(r) = big {
        assert!(json_error(r, 413).contains("limit"));
    }
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![0u8; 256 << 10])).collect();
    let r = c
        .post(s.url("/backups/upload?name=chunked"))
        .header("content-type", "application/x-tar")
        .body(reqwest::blocking::Body::new(ChunkReader(
            chunks.into_iter(),
            Vec::new(),
        )))
        .send();
    if let Ok(r) = r {
        json_error(r, 413);
    }
    // A fresh client: the refused uploads may have left a pooled connection the server closed.
    let c = client();
    assert_eq!(
        std::fs::read_dir(dir.join("backups/.tmp")).unwrap().count(),
        0
    );
    // The names are free again.
    let list = get_json(&c, &s.url("/backups"));
    assert_eq!(list, json!(["real"]));
    drop(s);
    // Not enough free space left after the upload: 507.
    let s = Server::start_args(&dir, &["--upload-reserve-mib", "1000000000"]);
    let msg = json_error(upload(&c, &s, "nospace", vec![0u8; 4096]), 507);
    assert!(msg.contains("disk space"), "{msg}");
    // A body over --max-body-mib on an ordinary route: 413 as JSON.
    drop(s);
    let s = Server::start_args(&dir, &["--max-body-mib", "1"]);
    create_index(&c, &s, "ix", 4, "float32");
    let r = c
        .post(s.url("/index/ix/vector/insert"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .unwrap();
    json_error(r, 413);
}

/// A `Read` over chunks (a body without a declared length).
struct ChunkReader<I>(I, Vec<u8>);

impl<I: Iterator<Item = Result<Vec<u8>, std::io::Error>>> Read for ChunkReader<I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.1.is_empty() {
            match self.0.next() {
                Some(c) => self.1 = c?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.1.len());
        buf[..n].copy_from_slice(&self.1[..n]);
        self.1.drain(..n);
        Ok(n)
    }
}

#[test]
fn backup_info_verifies_by_streaming_and_concurrent_calls_all_succeed() {
    let dir = tempdir("info");
    let s = Server::start(&dir, None);
    let c = client();
    create_index(&c, &s, "ix", 16, "int8");
    insert_range(&c, &s, "ix", "v", 0..2000, 16);
    backup_bytes(&c, &s, "ix", "b");
    let url = s.url("/backups/b/info");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let c = client();
                (0..5)
                    .map(|_| c.get(&url).send().unwrap().status().as_u16())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap().iter().all(|&st| st == 200));
    }
    let info: Value = c.get(&url).send().unwrap().json().unwrap();
    assert_eq!(
        (info["verified"].as_bool(), info["vector_count"].as_u64()),
        (Some(true), Some(2000))
    );
    assert_eq!(
        std::fs::read_dir(dir.join("backups/.tmp")).unwrap().count(),
        0
    );
}

fn log_of(dir: &Path, index: &str) -> std::path::PathBuf {
    let m: Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!("indexes/{index}/manifest.json"))).unwrap(),
    )
    .unwrap();
    dir.join(format!(
        "indexes/{index}/log-{:016}.bin",
        m["generation"].as_u64().unwrap()
    ))
}

fn checkpoint_of(dir: &Path, index: &str) -> std::path::PathBuf {
    let log = log_of(dir, index);
    let name = log
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace("log-", "ckpt-");
    log.with_file_name(name)
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_damaged_index_is_reported_and_the_others_serve() {
    let dir = tempdir("damage");
    let s = Server::start(&dir, None);
    let c = client();
    for name in ["ckpt", "undecodable", "midlog", "torn", "healthy"] {
        create_index(&c, &s, name, 4, "float32");
        for batch in 0..4 {
            insert_range(&c, &s, name, &format!("b{batch}-"), 0..5, 4);
        }
    }
    // Killed, so the records stay in the logs (a clean stop checkpoints them away).
    s.kill9();
    // A corrupt checkpoint (one flipped byte inside it).
    let ck = checkpoint_of(&dir, "ckpt");
    let mut b = std::fs::read(&ck).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    std::fs::write(&ck, b).unwrap();
    // A record that passes its CRC but does not decode.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(log_of(&dir, "undecodable"))
        .unwrap();
    std::io::Write::write_all(&mut f, &frame(b"\xc1 not msgpack")).unwrap();
    // A flipped byte in the first of four records: valid records follow the bad one.
    let lp = log_of(&dir, "midlog");
    let mut b = std::fs::read(&lp).unwrap();
    b[20] ^= 0x01;
    std::fs::write(&lp, b).unwrap();
    // A torn tail (half of a last record): normal after a crash, cut at start.
    let lp = log_of(&dir, "torn");
    let b = std::fs::read(&lp).unwrap();
    let last = frames(&b).pop().unwrap();
    let keep = b.len() - (8 + last.len()) / 2;
    std::fs::write(&lp, &b[..keep]).unwrap();
    // Stray entries: a file with an index's name, and one that is no index name at all.
    std::fs::write(dir.join("indexes/stray"), b"hello").unwrap();
    std::fs::write(dir.join("indexes/not an index!"), b"hello").unwrap();
    let before: Vec<_> = ["ckpt", "undecodable", "midlog"]
        .iter()
        .map(|n| snapshot(&dir.join(format!("indexes/{n}"))))
        .collect();
    let s = Server::start(&dir, None);
    assert_eq!(count(&c, &s, "healthy"), 20);
    // The torn tail lost only the unacknowledged half record.
    assert_eq!(count(&c, &s, "torn"), 15);
    insert_range(&c, &s, "torn", "after", 0..3, 4);
    assert_eq!(count(&c, &s, "torn"), 18);
    let list = get_json(&c, &s.url("/index/list"));
    let state = |n: &str| {
        list["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == n)
            .map(|i| {
                (
                    i["state"].as_str().unwrap().to_string(),
                    i["error"].as_str().unwrap_or("").to_string(),
                )
            })
    };
    for (name, why) in [
        ("ckpt", "checkpoint"),
        ("undecodable", "undecodable record"),
        ("midlog", "corrupt log frame"),
        ("stray", "not a directory"),
    ] {
        let (st, err) = state(name).unwrap_or_else(|| panic!("{name} not listed: {list}"));
        assert_eq!(st, "failed", "{name}");
        assert!(err.contains(why), "{name}: {err}");
        let msg = json_error(
            c.get(s.url(&format!("/index/{name}/info"))).send().unwrap(),
            503,
        );
        assert!(msg.contains(why), "{name}: {msg}");
        // Writes and searches answer 503 too; creating over it is refused.
        let r = c
            .post(s.url(&format!("/index/{name}/vector/insert")))
            .json(&json!([{"id": "x", "vector": [1, 2, 3, 4]}]))
            .send()
            .unwrap();
        json_error(r, 503);
        let r = c
            .post(s.url("/index/create"))
            .json(&json!({"index_name": name, "dim": 4, "space_type": "l2"}))
            .send()
            .unwrap();
        json_error(r, 503);
    }
    assert_eq!(state("healthy").unwrap().0, "ready");
    assert!(state("not an index!").is_none());
    // Nothing of the damaged indexes was touched.
    for (n, b) in ["ckpt", "undecodable", "midlog"].iter().zip(&before) {
        assert_eq!(
            &snapshot(&dir.join(format!("indexes/{n}"))),
            b,
            "{n} changed"
        );
    }
    assert_eq!(std::fs::read(dir.join("indexes/stray")).unwrap(), b"hello");
    // An operator clears one by deleting it; the name is then free.
    assert_eq!(
        c.delete(s.url("/index/ckpt/delete"))
            .send()
            .unwrap()
            .status(),
        200
    );
    create_index(&c, &s, "ckpt", 4, "float32");
    assert_eq!(count(&c, &s, "ckpt"), 0);
}

#[test]
fn a_failed_log_append_is_rolled_back_and_never_replays() {
    let dir = tempdir("enospc");
    // Writes past 192 KiB in any one file fail (EFBIG), as a full disk fails them.
    let s = Server::start_fsize_limited(&dir, 192 << 10);
    let c = client();
    create_index(&c, &s, "ix", 64, "float32");
    let mut acked = Vec::new();
    let mut failed_batch = None;
    for b in 0..200 {
        let items: Vec<Value> = (0..20)
            .map(|i| json!({"id": format!("b{b}-{i}"), "vector": vec_of(b * 20 + i, 64)}))
            .collect();
        let r = c
            .post(s.url("/index/ix/vector/insert"))
            .json(&items)
            .send()
            .unwrap();
        if r.status() == 200 {
            acked.push(b);
        } else {
            assert_eq!(r.status(), 500, "{:?}", r.text());
            failed_batch = Some(b);
            break;
        }
    }
    let failed = failed_batch.expect("the file-size limit was reached");
    // The log was cut back: a small write that fits still succeeds, and lands on a frame
    // boundary.
    let r = c
        .post(s.url("/index/ix/vector/insert"))
        .json(&json!([{"id": "small", "vector": vec_of(7, 64)}]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text());
    s.kill9();
    // Restarted without the limit: every acknowledged write is there, the failed one is not.
    let s = Server::start(&dir, None);
    assert_eq!(count(&c, &s, "ix"), acked.len() as u64 * 20 + 1);
    let get = |id: &str| {
        c.post(s.url("/index/ix/vector/get"))
            .json(&json!({ "id": id }))
            .send()
            .unwrap()
            .status()
    };
    for b in &acked {
        assert_eq!(get(&format!("b{b}-0")), 200);
    }
    assert_eq!(get(&format!("b{failed}-0")), 404);
    assert_eq!(get("small"), 200);
}

#[test]
fn every_error_is_json_and_small_inputs_are_checked() {
    let dir = tempdir("errors");
    let s = Server::start(&dir, Some("s3cret"));
    let c = client();
    let auth = |r: reqwest::blocking::RequestBuilder| r.header("authorization", "bearer s3cret");
    // The auth scheme is case-insensitive; a wrong token of any length is 401 JSON.
    let r = auth(c.post(s.url("/index/create")))
        .json(&json!({"index_name": "ix", "dim": 4, "space_type": "l2"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    for t in ["s3cre", "s3cretx", "Bearer s3cre", "BEARER  s3cret2", ""] {
        let r = c
            .get(s.url("/index/list"))
            .header("authorization", t)
            .send()
            .unwrap();
        json_error(r, 401);
    }
    let r = c
        .get(s.url("/index/list"))
        .header("authorization", "BEARER s3cret")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Path segments that are not UTF-8, unknown routes, wrong methods: JSON errors.
    json_error(
        auth(c.get(s.url("/index/%FF%FE/info"))).send().unwrap(),
        400,
    );
    json_error(auth(c.get(s.url("/no/such/route"))).send().unwrap(), 404);
    json_error(auth(c.put(s.url("/index/ix/search"))).send().unwrap(), 405);
    // Malformed filter updates name the bad entry; nothing is updated.
    let r = auth(c.post(s.url("/index/ix/filters/update")))
        .json(&json!({"updates": [{"id": "a", "filter": {"x": 1}}, {"filter": {"x": 2}}]}))
        .send()
        .unwrap();
    assert!(json_error(r, 400).contains("updates[1]"));
    // A category value in a search's `$in` list is held to the same length as a stored one.
    let r = auth(c.post(s.url("/index/ix/search")))
        .json(&json!({"k": 1, "vector": [1, 2, 3, 4], "filter": [{"tag": {"$in": ["a", "t".repeat(300)]}}]}))
        .send()
        .unwrap();
    assert!(json_error(r, 400).contains("too long"));
    // Ids, meta and filters have size limits; category values are checked inside arrays.
    let post = |items: Value| {
        auth(c.post(s.url("/index/ix/vector/insert")))
            .json(&items)
            .send()
            .unwrap()
    };
    let v = [1, 2, 3, 4];
    assert!(
        json_error(post(json!([{"id": "i".repeat(2000), "vector": v}])), 400)
            .contains("id too large")
    );
    assert!(
        json_error(
            post(json!([{"id": "a", "vector": v, "meta": "m".repeat(300 << 10)}])),
            400
        )
        .contains("meta too large")
    );
    assert!(
        json_error(
            post(json!([{"id": "a", "vector": v, "filter": {"tags": ["ok", "t".repeat(300)]}}])),
            400
        )
        .contains("too long")
    );
    assert!(
        json_error(post(json!([{"id": "a", "vector": [1, 2, "x", 4]}])), 400)
            .contains("Invalid JSON")
    );
    let r: Value = auth(c.get(s.url("/index/ix/info")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["total_elements"], 0);
    drop(s);
    // A jobs file whose ids or names would become paths outside the data directory is kept
    // aside; the server starts with no job history.
    let jobs = json!({"format": "cairn-jobs", "version": 1, "jobs": [{
        "job_id": "../../../tmp/x", "kind": "backup", "index_name": "ix", "backup_name": "b",
        "status": "running", "bytes_done": 0, "bytes_total": 0, "created_at": 1,
        "started_at": null, "completed_at": null, "error": null, "archive_size": null,
        "archive_sha256": null, "write_pause_us": 0, "cut": null}]});
    std::fs::write(dir.join("jobs.json"), jobs.to_string()).unwrap();
    let s = Server::start(&dir, Some("s3cret"));
    let j: Value = auth(c.get(s.url("/backups/jobs")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(j["jobs"], json!([]));
    assert!(std::fs::read_dir(&dir).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("jobs.json.unreadable")
    }));
}
