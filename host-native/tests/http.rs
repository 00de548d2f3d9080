//! Every route's success and error cases over real HTTP, backups under a live writer, hostile
//! uploads, auth on and off.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

mod common;
use common::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn msgpack(bytes: &[u8]) -> rmpv::Value {
    rmpv::decode::read_value(&mut &bytes[..]).unwrap()
}

#[test]
fn index_and_vector_routes() {
    let dir = tempdir("routes");
    let s = Server::start(&dir, None);
    let c = client();
    let h: Value = c.get(s.url("/health")).send().unwrap().json().unwrap();
    assert_eq!(h["status"], "ok");
    let st: Value = c.get(s.url("/stats")).send().unwrap().json().unwrap();
    assert!(st["version"].is_string());
    // create: bad params → 400 naming the field; duplicate → 409
    for (body, want) in [
        (
            json!({"index_name": "x", "dim": 1, "space_type": "l2"}),
            "dim",
        ),
        (
            json!({"index_name": "x", "dim": 4, "space_type": "hamming"}),
            "space_type",
        ),
        (
            json!({"index_name": "x", "dim": 4, "space_type": "l2", "M": 2}),
            "M",
        ),
        (
            json!({"index_name": "x", "dim": 4, "space_type": "l2", "ef_con": 5000}),
            "ef_con",
        ),
        (
            json!({"index_name": "x", "dim": 4, "space_type": "l2", "precision": "int4"}),
            "precision",
        ),
        (
            json!({"index_name": "../x", "dim": 4, "space_type": "l2"}),
            "index_name",
        ),
        (json!({"dim": 4, "space_type": "l2"}), "index_name"),
    ] {
        let r = c.post(s.url("/index/create")).json(&body).send().unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().unwrap();
        assert!(e["error"].as_str().unwrap().contains(want), "{e}");
    }
    create_index(&c, &s, "a", 4, "float32");
    let r = c
        .post(s.url("/index/create"))
        .json(&json!({"index_name": "a", "dim": 4, "space_type": "l2"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    // list / info
    let l: Value = c.get(s.url("/index/list")).send().unwrap().json().unwrap();
    assert_eq!(l["indexes"][0]["name"], "a");
    let i: Value = c
        .get(s.url("/index/a/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (i["dimension"].as_u64(), i["precision"].as_str()),
        (Some(4), Some("float32"))
    );
    assert_eq!(c.get(s.url("/index/zz/info")).send().unwrap().status(), 404);
    // insert JSON, bad vectors → 400 and nothing stored
    assert_eq!(
        insert(
            &c,
            &s,
            "a",
            json!([{"id": "p", "vector": [1, 0, 0, 0], "filter": {"c": "x"}, "meta": "hello"}])
        ),
        200
    );
    assert_eq!(
        insert(&c, &s, "a", json!([{"id": "q", "vector": [1, 0, 0]}])),
        400
    );
    assert_eq!(insert(&c, &s, "a", json!([])), 400);
    assert_eq!(
        insert(&c, &s, "zz", json!([{"id": "q", "vector": [1, 0, 0, 0]}])),
        404
    );
    let r = c
        .post(s.url("/index/a/vector/insert"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    // insert msgpack
    let row = rmpv::Value::Array(vec![
        "r".into(),
        rmpv::Value::Binary(b"m".to_vec()),
        "{\"c\":\"y\"}".into(),
        rmpv::Value::F32(1.0),
        rmpv::Value::Array(vec![
            rmpv::Value::F32(0.0),
            rmpv::Value::from(1),
            rmpv::Value::F64(0.0),
            rmpv::Value::F32(0.0),
        ]),
    ]);
    let mut body = Vec::new();
    rmpv::encode::write_value(&mut body, &rmpv::Value::Array(vec![row])).unwrap();
    let r = c
        .post(s.url("/index/a/vector/insert"))
        .header("content-type", "application/msgpack")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(s.url("/index/a/vector/insert"))
        .header("content-type", "application/msgpack")
        .body(vec![0xc1])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    // search (msgpack response), with and without filter; malformed filter → 400
    let r = c
        .post(s.url("/index/a/search"))
        .json(&json!({"k": 2, "vector": [1, 0, 0, 0]}))
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/msgpack");
    let hits = msgpack(&r.bytes().unwrap());
    assert_eq!(hits[0][1].as_str(), Some("p"));
    assert_eq!(hits.as_array().unwrap().len(), 2);
    let r = c
        .post(s.url("/index/a/search"))
        .json(&json!({"k": 5, "vector": [1, 0, 0, 0], "filter": "[{\"c\":{\"$eq\":\"y\"}}]"}))
        .send()
        .unwrap();
    let hits = msgpack(&r.bytes().unwrap());
    assert_eq!(hits.as_array().unwrap().len(), 1);
    assert_eq!(hits[0][1].as_str(), Some("r"));
    for bad in [
        json!({"k": 1, "vector": [1, 0, 0, 0], "filter": "[{\"c\":{\"$gt\":1}}]"}),
        json!({"k": 0, "vector": [1, 0, 0, 0]}),
        json!({"k": 1, "vector": [1]}),
        json!({"vector": [1, 0, 0, 0]}),
    ] {
        let r = c.post(s.url("/index/a/search")).json(&bad).send().unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(
        c.post(s.url("/index/zz/search"))
            .json(&json!({"k": 1, "vector": [1, 0, 0, 0]}))
            .send()
            .unwrap()
            .status(),
        404
    );
    // get
    let r = c
        .post(s.url("/index/a/vector/get"))
        .json(&json!({"id": "p"}))
        .send()
        .unwrap();
    let v = msgpack(&r.bytes().unwrap());
    assert_eq!(
        (v[0].as_str(), v[2].as_str()),
        (Some("p"), Some("{\"c\":\"x\"}"))
    );
    assert_eq!(v[1].as_slice(), Some(&b"hello"[..]));
    assert_eq!(
        c.post(s.url("/index/a/vector/get"))
            .json(&json!({"id": "nope"}))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.post(s.url("/index/a/vector/get"))
            .json(&json!({}))
            .send()
            .unwrap()
            .status(),
        400
    );
    // filters update, delete by filter, delete by id
    let r = c
        .post(s.url("/index/a/filters/update"))
        .json(&json!({"updates": [{"id": "p", "filter": {"c": "y"}}]}))
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "1 filters updated");
    assert_eq!(
        c.post(s.url("/index/a/filters/update"))
            .json(&json!({"x": 1}))
            .send()
            .unwrap()
            .status(),
        400
    );
    let r = c
        .delete(s.url("/index/a/vectors/delete"))
        .json(&json!({"filter": [{"c": {"$eq": "y"}}]}))
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "2 vectors deleted");
    assert_eq!(
        c.delete(s.url("/index/a/vectors/delete"))
            .json(&json!({"filter": {"c": 1}}))
            .send()
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        insert(&c, &s, "a", json!({"id": "z", "vector": [0, 0, 0, 1]})),
        200
    );
    assert_eq!(
        c.delete(s.url("/index/a/vector/z/delete"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.delete(s.url("/index/a/vector/z/delete"))
            .send()
            .unwrap()
            .status(),
        404
    );
    // delete index
    assert_eq!(
        c.delete(s.url("/index/a/delete")).send().unwrap().status(),
        200
    );
    assert_eq!(
        c.delete(s.url("/index/a/delete")).send().unwrap().status(),
        404
    );
}

#[test]
fn backup_routes_and_rules() {
    let dir = tempdir("backups");
    let s = Server::start(&dir, None);
    let c = client();
    create_index(&c, &s, "src", 8, "int8");
    insert_range(&c, &s, "src", "v", 0..500, 8);
    let bk = |idx: &str, name: Value| {
        c.post(s.url(&format!("/index/{idx}/backup")))
            .json(&json!({"name": name}))
            .send()
            .unwrap()
    };
    for bad in [
        json!("a/b"),
        json!(""),
        json!("x".repeat(201)),
        json!("../etc"),
    ] {
        assert_eq!(bk("src", bad).status(), 400);
    }
    assert_eq!(
        c.post(s.url("/index/src/backup"))
            .json(&json!({}))
            .send()
            .unwrap()
            .status(),
        400
    );
    assert_eq!(bk("missing", json!("b1")).status(), 404);
    let r = bk("src", json!("b1"));
    assert_eq!(r.status(), 202);
    let j: Value = r.json().unwrap();
    assert_eq!(j["status"], "in_progress");
    let id = j["job_id"].as_str().unwrap().to_string();
    let (ms, tail) = id.split_once('_').unwrap();
    assert!(ms.parse::<u64>().is_ok() && tail.len() == 6);
    let done = wait_job(&c, &s, &id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["vector_count"], 500);
    assert!(
        done["archive_sha256"].as_str().unwrap().len() == 64 && done["completed_at"].is_number()
    );
    assert_eq!(bk("src", json!("b1")).status(), 409, "name taken");
    let list: Value = c.get(s.url("/backups")).send().unwrap().json().unwrap();
    assert_eq!(list, json!(["b1"]));
    let jobs: Value = c
        .get(s.url("/backups/jobs"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(
        c.get(s.url("/backups/jobs/123_abcdef"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.delete(s.url(&format!("/backups/jobs/{id}")))
            .send()
            .unwrap()
            .status(),
        409,
        "cannot cancel a finished job"
    );
    let info: Value = c
        .get(s.url("/backups/b1/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (info["format"].as_str(), info["vector_count"].as_u64()),
        (Some("cairn-backup"), Some(500))
    );
    assert_eq!(
        c.get(s.url("/backups/nope/info")).send().unwrap().status(),
        404
    );
    // download streams the archive, its digest matches the job
    let r = c.get(s.url("/backups/b1/download")).send().unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-tar");
    let tarball = r.bytes().unwrap().to_vec();
    assert_eq!(tarball.len() as u64, done["archive_size"].as_u64().unwrap());
    assert_eq!(
        c.get(s.url("/backups/nope/download"))
            .send()
            .unwrap()
            .status(),
        404
    );
    // restore: sync, onto existing (409), missing backup (404), async job
    let rs = |name: &str, body: Value| {
        c.post(s.url(&format!("/backups/{name}/restore")))
            .json(&body)
            .send()
            .unwrap()
    };
    assert_eq!(rs("b1", json!({"target_index_name": "copy"})).status(), 201);
    assert_eq!(rs("b1", json!({"target_index_name": "src"})).status(), 409);
    assert_eq!(rs("nope", json!({"target_index_name": "t"})).status(), 404);
    assert_eq!(rs("b1", json!({})).status(), 400);
    assert_eq!(
        rs("b1", json!({"target_index_name": "bad/name"})).status(),
        400
    );
    let r = rs("b1", json!({"target_index_name": "copy2", "async": true}));
    assert_eq!(r.status(), 202);
    let rj: Value = r.json().unwrap();
    assert_eq!(
        wait_job(&c, &s, rj["job_id"].as_str().unwrap())["status"],
        "completed"
    );
    let q = json!({"k": 10, "vector": vec_of(3, 8)});
    let a = c
        .post(s.url("/index/src/search"))
        .json(&q)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let b = c
        .post(s.url("/index/copy/search"))
        .json(&q)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let b2 = c
        .post(s.url("/index/copy2/search"))
        .json(&q)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a, b2);
    // upload (multipart as Endee, and raw tar) then delete
    let form = reqwest::blocking::multipart::Form::new().part(
        "backup",
        reqwest::blocking::multipart::Part::bytes(tarball.clone()).file_name("up1.tar"),
    );
    let r = c
        .post(s.url("/backups/upload"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let r = c
        .post(s.url("/backups/upload?name=up2"))
        .header("content-type", "application/x-tar")
        .body(tarball.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(s.url("/backups/upload?name=up2"))
        .header("content-type", "application/x-tar")
        .body(tarball.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    let form = reqwest::blocking::multipart::Form::new().part(
        "backup",
        reqwest::blocking::multipart::Part::bytes(vec![1]).file_name("x.zip"),
    );
    assert_eq!(
        c.post(s.url("/backups/upload"))
            .multipart(form)
            .send()
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        c.delete(s.url("/backups/up2")).send().unwrap().status(),
        204
    );
    assert_eq!(
        c.delete(s.url("/backups/up2")).send().unwrap().status(),
        404
    );
    assert_eq!(
        c.delete(s.url("/backups/bad.name"))
            .send()
            .unwrap()
            .status(),
        400
    );
}

fn hostile(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hostile_uploads_are_refused_and_leave_nothing() {
    let dir = tempdir("hostile");
    let s = Server::start(&dir, None);
    let c = client();
    create_index(&c, &s, "src", 4, "float32");
    assert_eq!(
        insert(&c, &s, "src", json!([{"id": "a", "vector": [1, 2, 3, 4]}])),
        200
    );
    let id = c
        .post(s.url("/index/src/backup"))
        .json(&json!({"name": "good"}))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_job(&c, &s, &id)["status"], "completed");
    let good = c
        .get(s.url("/backups/good/download"))
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec();
    let manifest = {
        let mut a = tar::Archive::new(&good[..]);
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut v).unwrap();
        v
    };
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n - 1024 - 600] ^= 0x20; // inside the last data entry
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "slip",
            hostile(&[
                ("cairn-backup.json", tar::EntryType::Regular, &manifest),
                ("../evil", tar::EntryType::Regular, b"x"),
            ]),
        ),
        (
            "abs",
            hostile(&[
                ("cairn-backup.json", tar::EntryType::Regular, &manifest),
                ("/tmp/evil", tar::EntryType::Regular, b"x"),
            ]),
        ),
        (
            "link",
            hostile(&[
                ("cairn-backup.json", tar::EntryType::Regular, &manifest),
                ("index/l", tar::EntryType::Symlink, b""),
            ]),
        ),
        (
            "nomanifest",
            hostile(&[("index/checkpoint.bin", tar::EntryType::Regular, b"x")]),
        ),
        ("digest", flipped),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("garbage", b"this is not a tar file at all".repeat(40)),
    ];
    for (name, bytes) in cases {
        let r = c
            .post(s.url(&format!("/backups/upload?name={name}")))
            .header("content-type", "application/x-tar")
            .body(bytes)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{name}: {:?}", r.text());
    }
    let list: Value = c.get(s.url("/backups")).send().unwrap().json().unwrap();
    assert_eq!(list, json!(["good"]));
    let files: Vec<String> = std::fs::read_dir(dir.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".tar")).count(),
        1,
        "{files:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.join("backups/.tmp")).unwrap().count(),
        0
    );
    assert!(!dir.join("evil").exists() && !std::path::Path::new("/tmp/evil").exists());
}

#[test]
fn auth_on_and_off() {
    let dir = tempdir("auth");
    let s = Server::start(&dir, Some("s3cret"));
    let c = client();
    assert_eq!(c.get(s.url("/health")).send().unwrap().status(), 200);
    let r = c.get(s.url("/index/list")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.json::<Value>().unwrap()["error"].is_string());
    assert_eq!(
        c.get(s.url("/index/list"))
            .header("Authorization", "wrong")
            .send()
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(s.url("/index/list"))
            .header("Authorization", "s3cret")
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(s.url("/index/list"))
            .header("Authorization", "Bearer s3cret")
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(c.get(s.url("/backups")).send().unwrap().status(), 401);
    drop(s);
    let s = Server::start(&dir, None);
    assert_eq!(
        c.get(s.url("/index/list"))
            .header("Authorization", "None")
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn backup_while_a_writer_keeps_inserting() {
    let dir = tempdir("live");
    let s = Server::start(&dir, None);
    let c = client();
    let dim = 32;
    create_index(&c, &s, "live", dim, "float32");
    for chunk in 0..20 {
        insert_range(&c, &s, "live", "w", chunk * 1000..(chunk + 1) * 1000, dim);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let latencies = Arc::new(Mutex::new(Vec::<u128>::new()));
    let writer = {
        let (stop, acked, lat, url) = (
            stop.clone(),
            acked.clone(),
            latencies.clone(),
            s.url("/index/live/vector/insert"),
        );
        std::thread::spawn(move || {
            let c = client();
            let mut i = 20_000;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = c
                    .post(&url)
                    .json(&json!([{"id": format!("w{i}"), "vector": vec_of(i, dim)}]))
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200, "every write during the backup succeeds");
                lat.lock().unwrap().push(t.elapsed().as_micros());
                acked.lock().unwrap().push(i);
                i += 1;
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(150));
    let id = c
        .post(s.url("/index/live/backup"))
        .json(&json!({"name": "live1"}))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = wait_job(&c, &s, &id);
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(job["status"], "completed", "{job}");
    let cut = job["vector_count"].as_u64().unwrap() as usize;
    let lat = latencies.lock().unwrap();
    let max = lat.iter().max().copied().unwrap_or(0);
    println!(
        "live backup: {} writes acknowledged during the run, max write latency {max} µs, write pause {} µs, vectors at cut {cut}",
        lat.len(),
        job["write_pause_us"]
    );
    // The pause is an O(1) cut, not the length of the backup (generous bound: no timing flake).
    assert!(job["write_pause_us"].as_u64().unwrap() < 1_000_000);
    assert!(!acked.lock().unwrap().is_empty());
    // The archive is the state at the cut: exactly the first `cut` ids of the single writer.
    assert_eq!(
        c.post(s.url("/backups/live1/restore"))
            .json(&json!({"target_index_name": "atcut"}))
            .send()
            .unwrap()
            .status(),
        201
    );
    let info: Value = c
        .get(s.url("/index/atcut/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["total_elements"].as_u64().unwrap() as usize, cut);
    for i in [0, cut - 1] {
        assert_eq!(
            c.post(s.url("/index/atcut/vector/get"))
                .json(&json!({"id": format!("w{i}")}))
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        c.post(s.url("/index/atcut/vector/get"))
            .json(&json!({"id": format!("w{cut}")}))
            .send()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn rules_while_a_backup_is_running_and_cancel() {
    let dir = tempdir("running");
    // Paced to 1 MiB/s, the backup of index "one" (over 3 MiB below) runs for seconds.
    let s = Server::start_args(&dir, &["--backup-max-mib-per-s", "1"]);
    let c = client();
    create_index(&c, &s, "one", 4, "float32");
    create_index(&c, &s, "two", 4, "float32");
    assert_eq!(
        insert(&c, &s, "one", json!([{"id": "a", "vector": [1, 2, 3, 4]}])),
        200
    );
    // Enough data that a paced backup takes seconds: 3 MiB of metadata.
    for batch in 0..3 {
        let items: Vec<Value> = (0..16)
            .map(|i| json!({"id": format!("m{batch}-{i}"), "vector": [1, 2, 3, 4], "meta": "x".repeat(64 << 10)}))
            .collect();
        assert_eq!(insert(&c, &s, "one", Value::Array(items)), 200);
    }
    let bk = |idx: &str, name: &str| {
        c.post(s.url(&format!("/index/{idx}/backup")))
            .json(&json!({"name": name}))
            .send()
            .unwrap()
    };
    let r = bk("one", "nightly");
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // the job is running (paced)
    let t0 = Instant::now();
    loop {
        let j: Value = c
            .get(s.url(&format!("/backups/jobs/{id}")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if j["state"] == "running" && j["vector_count"].is_number() {
            break;
        }
        assert!(t0.elapsed().as_secs() < 10, "job never ran: {j}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let e = bk("one", "other");
    assert_eq!(e.status(), 409, "second backup of the same index");
    assert!(
        e.json::<Value>().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains(&id)
    );
    assert_eq!(
        bk("two", "nightly").status(),
        409,
        "same name from another index"
    );
    let e = c.delete(s.url("/index/one/delete")).send().unwrap();
    assert_eq!(e.status(), 409, "delete of an index a job is using");
    // writes go on during the backup
    assert_eq!(
        insert(&c, &s, "one", json!([{"id": "b", "vector": [4, 3, 2, 1]}])),
        200
    );
    // cancel the running job
    let r = c
        .delete(s.url(&format!("/backups/jobs/{id}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let j: Value = r.json().unwrap();
    assert_eq!(
        (j["status"].as_str(), j["state"].as_str()),
        (Some("cancelled"), Some("cancelled"))
    );
    assert!(j["completed_at"].is_number());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        std::fs::read_dir(dir.join("backups/.tmp")).unwrap().count(),
        0,
        "no partial file after cancel"
    );
    let list: Value = c.get(s.url("/backups")).send().unwrap().json().unwrap();
    assert_eq!(list, json!([]));
    // the index and the name are free again
    assert_eq!(
        c.delete(s.url("/index/two/delete"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(bk("one", "nightly").status(), 202);
}

/// Starts a backup of `index` named `name` and waits for the job to end.
#[test]
fn backups_use_the_recorded_checkpoint_digest_and_refuse_a_wrong_one() {
    let dir = tempdir("digest");
    let s = Server::start(&dir, None);
    let c = client();
    create_index(&c, &s, "dg", 8, "float32");
    insert_range(&c, &s, "dg", "d", 0..50, 8);
    let ck = dir.join("indexes/dg/ckpt-0000000000000001.bin");
    let digest = dir.join("indexes/dg/ckpt-0000000000000001.sha256");
    let text = std::fs::read_to_string(&digest).expect("digest written with the checkpoint");
    let (size, sha) = text.trim().split_once(' ').unwrap();
    assert_eq!(
        size.parse::<u64>().unwrap(),
        std::fs::metadata(&ck).unwrap().len()
    );
    assert_eq!(sha.len(), 64);

    // With the record: the backup completes and restores.
    assert_eq!(backup_and_wait(&c, &s, "dg", "dg1")["status"], "completed");
    // A record that lies (same size, other digest) is caught while streaming: the job fails
    // and publishes nothing, instead of archiving bytes under a digest they do not have.
    std::fs::write(&digest, format!("{size} {}\n", "0".repeat(64))).unwrap();
    let bad = backup_and_wait(&c, &s, "dg", "dg2");
    assert_eq!(bad["status"], "failed", "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("SHA-256"), "{bad}");
    assert!(!dir.join("backups/dg2.tar").exists());
    // Without a record (an older data directory) the job digests the checkpoint itself.
    std::fs::remove_file(&digest).unwrap();
    assert_eq!(backup_and_wait(&c, &s, "dg", "dg3")["status"], "completed");
    for (name, target) in [("dg1", "r1"), ("dg3", "r3")] {
        let r = c
            .post(s.url(&format!("/backups/{name}/restore")))
            .json(&json!({ "target_index_name": target }))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        let info: Value = c
            .get(s.url(&format!("/index/{target}/info")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(info["total_elements"], 50);
        // A restored index records its checkpoint's digest too.
        assert!(
            dir.join(format!("indexes/{target}/ckpt-0000000000000001.sha256"))
                .exists()
        );
    }
}

/// A deterministic pseudo-random vector in [-1, 1) (distinct for every `i`).
fn spread_vec(i: usize, dim: usize) -> Vec<f32> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..dim)
        .map(|_| {
            x ^= x >> 31;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x ^= x >> 29;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Searches `index` with vector `i`'s own vector: (top id, top similarity, [(id, similarity)]).
fn self_search(
    c: &reqwest::blocking::Client,
    s: &Server,
    index: &str,
    i: usize,
) -> Vec<(String, f64)> {
    let r = c
        .post(s.url(&format!("/index/{index}/search")))
        .json(&json!({"k": 5, "ef": 64, "vector": spread_vec(i, 96)}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    msgpack(&r.bytes().unwrap())
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[1].as_str().unwrap().to_string(), h[0].as_f64().unwrap()))
        .collect()
}

#[test]
fn int8_reranks_with_float32_originals_across_checkpoints_restarts_and_restores() {
    let dir = tempdir("int8");
    let env = [("CAIRN_CHECKPOINT_AFTER_MIB", "1")];
    let s = Server::start_with_env(&dir, None, &env);
    let c = client();
    create_index(&c, &s, "q8", 96, "int8");
    let put = |ids: std::ops::Range<usize>| {
        for chunk in ids.collect::<Vec<_>>().chunks(500) {
            let items: Vec<Value> = chunk
                .iter()
                .map(|&i| json!({"id": format!("v{i}"), "vector": spread_vec(i, 96)}))
                .collect();
            assert_eq!(insert(&c, &s, "q8", Value::Array(items)), 200);
        }
    };
    let generation = || -> u64 {
        let m = std::fs::read(dir.join("indexes/q8/manifest.json")).unwrap();
        serde_json::from_slice::<Value>(&m).unwrap()["generation"]
            .as_u64()
            .unwrap()
    };
    let wait_generation_past = |g: u64| {
        let t0 = Instant::now();
        while generation() <= g && t0.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(generation() > g, "no checkpoint after generation {g}");
        generation()
    };
    // Checkpoints after each batch (later ones copy earlier ones' originals), then writes
    // only in memory.
    put(0..4000);
    let g = wait_generation_past(1);
    put(4000..8000);
    wait_generation_past(g);
    put(8000..8100);
    let check = |s: &Server, index: &str| {
        for i in [10, 3999, 5000, 8050] {
            let hits = self_search(&c, s, index, i);
            // Re-ranked by float32 distance: the vector itself at distance exactly 0 (its int8
            // code alone is ~5e-4 away), the others at their exact float32 distance.
            assert_eq!(hits[0], (format!("v{i}"), 1.0), "{index} v{i}: {hits:?}");
            let q = spread_vec(i, 96);
            for (id, sim) in &hits[1..] {
                let v = spread_vec(id[1..].parse().unwrap(), 96);
                let d: f32 = q.iter().zip(&v).map(|(a, b)| (a - b) * (a - b)).sum();
                assert!((sim - (1.0 - d as f64)).abs() < 1e-3, "{id}: {sim} vs {d}");
            }
            // Reading a vector back returns the float32 original, bit for bit, not its codes.
            let r = c
                .post(s.url(&format!("/index/{index}/vector/get")))
                .json(&json!({"id": format!("v{i}")}))
                .send()
                .unwrap();
            assert_eq!(r.status(), 200);
            let got: Vec<f32> = msgpack(&r.bytes().unwrap())[4]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(got, q, "{index} v{i} read back");
        }
    };
    check(&s, "q8");
    // After a restart the originals come from the checkpoint file and the replayed log.
    drop(s);
    let s = Server::start_with_env(&dir, None, &env);
    check(&s, "q8");
    // A backup carries them; the restored index re-ranks the same way.
    assert_eq!(backup_and_wait(&c, &s, "q8", "q8b")["status"], "completed");
    let r = c
        .post(s.url("/backups/q8b/restore"))
        .json(&json!({ "target_index_name": "q8r" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    check(&s, "q8r");
}

#[test]
fn operators_see_request_logs_metrics_and_probes_and_never_a_token() {
    let dir = tempdir("observe");
    let log = dir.join("server.log");
    let s = Server::start_logged(&dir, Some("s3cret"), &["--log-format", "json"], &log);
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", "s3cret".parse().unwrap());
    let c = reqwest::blocking::Client::builder()
        .default_headers(h)
        .build()
        .unwrap();
    let root = s.base.trim_end_matches("/api/v1").to_string();
    create_index(&c, &s, "docs", 8, "float32");
    insert_range(&c, &s, "docs", "v", 0..300, 8);
    let q = json!({"k": 5, "vector": vec_of(3, 8)});
    for _ in 0..3 {
        assert_eq!(
            c.post(s.url("/index/docs/search"))
                .json(&q)
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    let done = backup_and_wait(&c, &s, "docs", "b1");
    assert_eq!(done["status"], "completed");
    // A token in a query string (as Endee's client sends on downloads) is never logged.
    let dl = client()
        .get(format!("{root}/api/v2/backup/b1/download?token=s3cret"))
        .send()
        .unwrap();
    assert_eq!(dl.status(), 200);
    // The probes answer without a token; the metrics need the root token.
    let anon = client();
    assert_eq!(
        anon.get(format!("{root}/livez")).send().unwrap().status(),
        200
    );
    let ready = anon.get(format!("{root}/readyz")).send().unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().unwrap()["status"], "ready");
    assert_eq!(
        anon.get(format!("{root}/metrics")).send().unwrap().status(),
        401
    );
    let m = c.get(format!("{root}/metrics")).send().unwrap();
    assert_eq!(m.status(), 200);
    let text = m.text().unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(
        value(
            r#"cairn_http_requests_total{method="POST",route="/api/v1/index/{name}/search",status="200"}"#
        ),
        3.0
    );
    assert_eq!(value(r#"cairn_index_vectors{index="docs"}"#), 300.0);
    assert!(value(r#"cairn_index_log_bytes{index="docs"}"#) > 0.0);
    assert!(value(r#"cairn_index_checkpoint_bytes{index="docs"}"#) > 0.0);
    assert_eq!(
        value(r#"cairn_jobs_ended_total{kind="backup",status="completed"}"#),
        1.0
    );
    assert_eq!(
        value("cairn_backup_bytes_total"),
        done["archive_size"].as_f64().unwrap()
    );
    assert_eq!(
        value(r#"cairn_jobs{kind="backup",status="completed"}"#),
        1.0
    );
    assert_eq!(value("cairn_indexes_loading"), 0.0);
    assert!(text.contains("cairn_http_request_duration_seconds_bucket"));
    assert!(text.contains("cairn_backup_write_pause_seconds"));
    drop(s);
    // One JSON object a line; each request with its method, route, status and latency.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("s3cret"), "a token reached the log");
    let requests: Vec<Value> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "cairn::http")
        .collect();
    let search = requests
        .iter()
        .find(|v| v["span"]["route"] == "/api/v1/index/{name}/search")
        .expect("a search logged");
    assert_eq!(
        (&search["span"]["method"], &search["status"]),
        (&json!("POST"), &json!(200))
    );
    assert!(search["latency_us"].is_u64() && search["bytes_out"].as_u64().unwrap() > 0);
    assert!(search["span"]["bytes_in"].as_u64().unwrap() > 0);
    assert!(
        requests
            .iter()
            .any(|v| v["span"]["route"] == "/api/v2/backup/{b}/download")
    );
}

/// Writes `FILE.br` beside each FILE argument, as scripts/build-web.sh does.
const BROTLI_TWIN: &str = "const z = require('zlib'), fs = require('fs'); \
    for (const f of process.argv.slice(1)) fs.writeFileSync(f + '.br', z.brotliCompressSync(fs.readFileSync(f)));";

#[test]
fn the_playground_is_served_compressed_and_cached_and_cors_lets_only_named_origins_in() {
    let dir = tempdir("static");
    let web = dir.join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.html"), "<h1>cairn</h1>").unwrap();
    let wasm: Vec<u8> = (0..50_000u32).map(|i| (i % 7) as u8).collect();
    std::fs::write(web.join("app.wasm"), &wasm).unwrap();
    let gz = std::process::Command::new("gzip")
        .args(["-k", "-9"])
        .arg(web.join("app.wasm"))
        .status()
        .unwrap();
    assert!(gz.success());
    let br = std::process::Command::new("node")
        .args(["-e", BROTLI_TWIN])
        .arg(web.join("app.wasm"))
        .status()
        .unwrap();
    assert!(br.success());
    let data = dir.join("data");
    let s = Server::start_full(
        &data,
        Some("s3cret"),
        &[],
        &[
            "--playground",
            web.to_str().unwrap(),
            "--cors-origin",
            "https://app.example",
        ],
        None,
    );
    let c = client();
    let root = s.base.trim_end_matches("/api/v1").to_string();
    let r = c.get(format!("{root}/")).send().unwrap();
    assert_eq!(r.status(), 200);
    let tag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(r.text().unwrap(), "<h1>cairn</h1>");
    let again = c
        .get(format!("{root}/"))
        .header("if-none-match", &tag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);
    // A client that takes gzip gets the .gz twin; one that does not, the file itself.
    let z = c
        .get(format!("{root}/app.wasm"))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(z.status(), 200);
    assert_eq!(z.headers()["content-encoding"], "gzip");
    assert_eq!(z.headers()["content-type"], "application/wasm");
    let zb = z.bytes().unwrap();
    assert!(zb.len() < wasm.len() / 10);
    assert_eq!(zb.to_vec(), std::fs::read(web.join("app.wasm.gz")).unwrap());
    // One that takes brotli gets the .br twin (what scripts/build-web.sh writes with Node's zlib).
    let b = c
        .get(format!("{root}/app.wasm"))
        .header("accept-encoding", "br, gzip")
        .send()
        .unwrap();
    assert_eq!(b.headers()["content-encoding"], "br");
    assert_eq!(
        b.bytes().unwrap().to_vec(),
        std::fs::read(web.join("app.wasm.br")).unwrap()
    );
    let plain = c.get(format!("{root}/app.wasm")).send().unwrap();
    assert_eq!(plain.bytes().unwrap().to_vec(), wasm);
    assert_eq!(
        c.get(format!("{root}/nothing-here.js"))
            .send()
            .unwrap()
            .status(),
        404
    );
    // CORS: the named origin's preflight is answered (before auth); another origin is not let in.
    let pre = |origin: &str| {
        c.request(reqwest::Method::OPTIONS, s.url("/index/list"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
            .unwrap()
    };
    let ok = pre("https://app.example");
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        pre("https://evil.example")
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let listed = c
        .get(s.url("/index/list"))
        .header("origin", "https://app.example")
        .header("authorization", "s3cret")
        .send()
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    drop(s);
    // Without --cors-origin: no CORS headers at all.
    let s = Server::start(&data, None);
    let r = c
        .get(s.url("/index/list"))
        .header("origin", "https://app.example")
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
