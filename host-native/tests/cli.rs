//! The command-line tools beside `serve`, as an operator runs them: check and read an archive
//! without a server, restore one into a data directory no server uses, and never into one a
//! server holds.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

mod common;
use common::*;
use serde_json::{Value, json};
use std::process::{Command, Output};

fn cairn(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The raw answer of a search of index "docs".
fn search(c: &reqwest::blocking::Client, s: &Server, q: &Value) -> Vec<u8> {
    c.post(s.url("/index/docs/search"))
        .json(q)
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec()
}

#[test]
fn verify_inspect_and_restore_an_archive_without_a_server() {
    let a = tempdir("cli-a");
    let s = Server::start(&a, None);
    let c = client();
    create_index(&c, &s, "docs", 8, "float32");
    insert_range(&c, &s, "docs", "v", 0..400, 8);
    let done = backup_and_wait(&c, &s, "docs", "b1");
    assert_eq!(done["status"], "completed");
    let q = json!({"k": 10, "vector": vec_of(5, 8), "ef": 512});
    let want = search(&c, &s, &q);
    let archive = a.join("backups").join("b1.tar");
    let file = archive.to_str().unwrap();

    // verify: structure, digests and contents as an index.
    let o = cairn(&["backup", "verify", file]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("400 vectors"), "{}", text(&o));
    // inspect: the manifest as JSON.
    let o = cairn(&["backup", "inspect", file]);
    assert!(o.status.success(), "{}", text(&o));
    let m: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (m["index_name"].as_str(), m["vector_count"].as_u64()),
        (Some("docs"), Some(400))
    );
    assert_eq!(m["archive_bytes"].as_u64(), done["archive_size"].as_u64());

    // A restore into the directory the server holds is refused, and changes nothing there.
    let o = cairn(&[
        "restore",
        file,
        "--data-dir",
        a.to_str().unwrap(),
        "--index",
        "copy",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("in use by another cairn process"),
        "{}",
        text(&o)
    );
    drop(s);

    // Into another directory: a server there answers as the original did.
    let b = tempdir("cli-b");
    let o = cairn(&[
        "restore",
        file,
        "--data-dir",
        b.to_str().unwrap(),
        "--index",
        "docs",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("400 vectors"), "{}", text(&o));
    let s = Server::start(&b, None);
    assert_eq!(search(&c, &s, &q), want);
    // The archive it took in is not left behind.
    let list: Value = c.get(s.url("/backups")).send().unwrap().json().unwrap();
    assert_eq!(list, json!([]));
    drop(s);

    // A damaged archive fails verify (exit 1, saying why) and restores nothing.
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let bad = b.join("bad.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let o = cairn(&["backup", "verify", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("invalid backup archive"), "{}", text(&o));
    let o = cairn(&[
        "restore",
        bad.to_str().unwrap(),
        "--data-dir",
        b.to_str().unwrap(),
        "--index",
        "other",
    ]);
    assert!(!o.status.success());
    assert!(!b.join("indexes").join("other").exists());
    // Not an archive at all.
    let o = cairn(&["backup", "inspect", b.join("cairn.lock").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("not a CairnDB backup archive"),
        "{}",
        text(&o)
    );
}

#[test]
fn every_command_has_help_and_the_binary_its_version() {
    let o = cairn(&["--version"]);
    assert!(o.status.success());
    assert!(text(&o).contains(env!("CARGO_PKG_VERSION")));
    for cmd in [
        &["serve", "--help"][..],
        &["backup", "verify", "--help"],
        &["backup", "inspect", "--help"],
        &["restore", "--help"],
    ] {
        let o = cairn(cmd);
        assert!(o.status.success(), "{cmd:?}: {}", text(&o));
        assert!(text(&o).contains("Usage"), "{cmd:?}");
    }
}
