//! `kill -9` the server mid-inserts and mid-backup, restart, and check what survived.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

mod common;
use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

#[test]
fn kill9_during_inserts_keeps_every_acknowledged_write() {
    let dir = tempdir("crash-ins");
    let s = Server::start(&dir, None);
    let c = client();
    create_index(&c, &s, "ix", 16, "int8");
    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let url = s.url("/index/ix/vector/insert");
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (acked, url) = (acked.clone(), url.clone());
            std::thread::spawn(move || {
                let c = client();
                for i in (w..100_000).step_by(2) {
                    match c
                        .post(&url)
                        .json(&json!([{"id": format!("k{i}"), "vector": vec_of(i, 16)}]))
                        .send()
                    {
                        Ok(r) if r.status() == 200 => acked.lock().unwrap().push(i),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    s.kill9();
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 10, "writers made progress before the kill");
    let s = Server::start(&dir, None);
    let info: Value = c
        .get(s.url("/index/ix/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let total = info["total_elements"].as_u64().unwrap() as usize;
    assert!(total >= acked.len(), "{total} < {}", acked.len());
    for i in &acked {
        let r = c
            .post(s.url("/index/ix/vector/get"))
            .json(&json!({"id": format!("k{i}")}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged write k{i} lost");
    }
    println!(
        "crash during inserts: {} acknowledged, {total} present after restart",
        acked.len()
    );
}

#[test]
fn kill9_during_backup_fails_the_job_and_leaves_no_partial_file() {
    let dir = tempdir("crash-bk");
    let s = Server::start(&dir, None);
    let c = client();
    let dim = 256;
    create_index(&c, &s, "big", dim, "float32");
    for chunk in 0..30 {
        insert_range(&c, &s, "big", "b", chunk * 1000..(chunk + 1) * 1000, dim);
    }
    // A second, large backup source makes the job last long enough to be killed mid-way:
    // kill right after the 202, whatever the job's state then (queued, running or done).
    let r = c
        .post(s.url("/index/big/backup"))
        .json(&json!({"name": "nightly"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.kill9();
    let s = Server::start(&dir, None);
    let job: Value = c
        .get(s.url(&format!("/backups/jobs/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let tmp_left = std::fs::read_dir(dir.join("backups/.tmp")).unwrap().count();
    assert_eq!(tmp_left, 0, "no partial file remains");
    match job["status"].as_str() {
        Some("failed") => {
            assert_eq!(job["error"], "interrupted by restart");
            let list: Value = c.get(s.url("/backups")).send().unwrap().json().unwrap();
            assert_eq!(list, json!([]), "a failed backup is not listed");
            // the same name works again
            let r = c
                .post(s.url("/index/big/backup"))
                .json(&json!({"name": "nightly"}))
                .send()
                .unwrap();
            assert_eq!(r.status(), 202);
            let id2 = r.json::<Value>().unwrap()["job_id"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(wait_job(&c, &s, &id2)["status"], "completed");
        }
        Some("completed") => {
            // finished before the kill: then it must be whole and restorable
            assert_eq!(
                c.post(s.url("/backups/nightly/restore"))
                    .json(&json!({"target_index_name": "r"}))
                    .send()
                    .unwrap()
                    .status(),
                201
            );
        }
        other => panic!("job left as {other:?}: {job}"),
    }
    println!("crash during backup: job ended {}", job["status"]);
    let info: Value = c
        .get(s.url("/index/big/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["total_elements"], 30_000);
    let jobs: Value = c
        .get(s.url("/backups/jobs"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["status"] != "in_progress" || j["job_id"] != id)
    );
}

#[test]
fn the_server_answers_while_an_index_loads_and_the_index_says_so() {
    let dir = tempdir("loading");
    let s = Server::start(&dir, None);
    let c = client();
    create_index(&c, &s, "big", 64, "float32");
    create_index(&c, &s, "small", 4, "float32");
    insert_range(&c, &s, "small", "s", 0..10, 4);
    for b in 0..40 {
        insert_range(&c, &s, "big", "b", b * 1000..(b + 1) * 1000, 64);
    }
    // Killed: the next start replays the log written since the last checkpoint.
    s.kill9();
    let t0 = std::time::Instant::now();
    let s = Server::start_unready(&dir);
    let up = t0.elapsed();
    let mut saw_loading = false;
    loop {
        let h: Value = c.get(s.url("/health")).send().unwrap().json().unwrap();
        let r = c.get(s.url("/index/big/info")).send().unwrap();
        if r.status() == 200 {
            assert_eq!(r.json::<Value>().unwrap()["total_elements"], 40_000);
            break;
        }
        // Not loaded yet: 503, JSON, Retry-After, listed as loading; health says not ready.
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert!(
            r.json::<Value>().unwrap()["error"]
                .as_str()
                .unwrap()
                .contains("loading")
        );
        saw_loading = true;
        let l: Value = c.get(s.url("/index/list")).send().unwrap().json().unwrap();
        let big = l["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "big")
            .cloned();
        // (It may have finished between the two calls.)
        if let Some(big) = big.filter(|b| b["state"] != "ready") {
            assert_eq!(big["state"], "loading", "{l}");
            assert_eq!(h["ready"], false);
        }
        assert!(t0.elapsed().as_secs() < 60, "index never loaded");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let ready = t0.elapsed();
    let h: Value = c.get(s.url("/health")).send().unwrap().json().unwrap();
    assert_eq!(h["ready"], true);
    assert_eq!(
        c.get(s.url("/index/small/info")).send().unwrap().status(),
        200
    );
    println!(
        "restart after kill -9, 40,000 x 64: health answered after {up:?}, index ready after {ready:?} (saw loading: {saw_loading})"
    );
}
