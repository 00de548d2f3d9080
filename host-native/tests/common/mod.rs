//! Starts the real `cairn` binary on a free port on 127.0.0.1 and stops it on drop.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub base: String,
    pub data: PathBuf,
    pub port: u16,
}

pub fn bin() -> PathBuf {
    std::env::var_os("CAIRN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cairn")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory under the system temp dir, removed (with everything in it) when dropped, so a
/// test run leaves nothing behind. Declare it before the `Server` that uses it: locals drop in
/// reverse order, so the server stops first.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir(tag: &str) -> TempDir {
    let p = std::env::temp_dir().join(format!(
        "cairn-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

thread_local! {
    /// Where the next spawned server writes its log (`start_logged`).
    static LOG_TO: std::cell::RefCell<Option<std::path::PathBuf>> = const { std::cell::RefCell::new(None) };
}

impl Server {
    pub fn start(data: &Path, token: Option<&str>) -> Server {
        Self::start_with_env(data, token, &[])
    }

    pub fn start_with_env(data: &Path, token: Option<&str>, env: &[(&str, &str)]) -> Server {
        Self::start_full(data, token, env, &[], None)
    }

    /// Starts with extra `serve` flags.
    pub fn start_args(data: &Path, args: &[&str]) -> Server {
        Self::start_full(data, None, &[], args, None)
    }

    /// Starts with a file-size limit (RLIMIT_FSIZE) on the server process: writes past it fail
    /// with EFBIG, as a full disk fails them with ENOSPC.
    pub fn start_fsize_limited(data: &Path, fsize: u64) -> Server {
        Self::start_full(data, None, &[], &[], Some(fsize))
    }

    /// Starts and returns as soon as /health answers, indexes possibly still loading.
    pub fn start_unready(data: &Path) -> Server {
        Self::spawn(data, None, &[], &[], None, false)
    }

    /// Starts with its log (stdout and stderr) written to `log`.
    pub fn start_logged(data: &Path, token: Option<&str>, args: &[&str], log: &Path) -> Server {
        LOG_TO.with(|l| *l.borrow_mut() = Some(log.to_path_buf()));
        let s = Self::spawn(data, token, &[], args, None, true);
        LOG_TO.with(|l| *l.borrow_mut() = None);
        s
    }

    pub fn start_full(
        data: &Path,
        token: Option<&str>,
        env: &[(&str, &str)],
        args: &[&str],
        fsize: Option<u64>,
    ) -> Server {
        Self::spawn(data, token, env, args, fsize, true)
    }

    fn spawn(
        data: &Path,
        token: Option<&str>,
        env: &[(&str, &str)],
        args: &[&str],
        fsize: Option<u64>,
        wait_ready: bool,
    ) -> Server {
        let port = free_port();
        let mut cmd = Command::new(bin());
        if let Some(limit) = fsize {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let r = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.args(["serve", "--data-dir"])
            .arg(data)
            .args(["--port", &port.to_string()])
            .args(args);
        cmd.env_remove("NDD_AUTH_TOKEN")
            .env_remove("NDD_DATA_DIR")
            .env_remove("NDD_SERVER_PORT");
        if let Some(t) = token {
            cmd.args(["--auth-token", t]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (out, err) = match LOG_TO.with(|l| l.borrow().clone()) {
            Some(p) => {
                let f = std::fs::File::create(&p).expect("log file");
                (
                    Stdio::from(f.try_clone().expect("log file")),
                    Stdio::from(f),
                )
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = cmd.stdout(out).stderr(err).spawn().expect("start cairn");
        let base = format!("http://127.0.0.1:{port}/api/v1");
        let s = Server {
            child,
            base,
            data: data.to_path_buf(),
            port,
        };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            // Up, and every index found at start loaded (indexes load in the background).
            let health = reqwest::blocking::get(format!("{}/health", s.base))
                .ok()
                .filter(|r| r.status().is_success())
                .and_then(|r| r.json::<serde_json::Value>().ok());
            if health.is_some_and(|h| !wait_ready || h["ready"] != false) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        panic!("server did not start");
    }

    pub fn url(&self, p: &str) -> String {
        format!("{}{}", self.base, p)
    }

    /// SIGKILL: no graceful anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM for a graceful stop, then make sure.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

pub fn create_index(
    c: &reqwest::blocking::Client,
    s: &Server,
    name: &str,
    dim: usize,
    precision: &str,
) {
    let r = c
        .post(s.url("/index/create"))
        .json(&serde_json::json!({"index_name": name, "dim": dim, "space_type": "l2", "precision": precision}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
}

pub fn insert(
    c: &reqwest::blocking::Client,
    s: &Server,
    name: &str,
    items: serde_json::Value,
) -> reqwest::StatusCode {
    c.post(s.url(&format!("/index/{name}/vector/insert")))
        .json(&items)
        .send()
        .unwrap()
        .status()
}

pub fn wait_job(c: &reqwest::blocking::Client, s: &Server, id: &str) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let j: serde_json::Value = c
            .get(s.url(&format!("/backups/jobs/{id}")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if j["status"] != "in_progress" || t0.elapsed() > Duration::from_secs(120) {
            return j;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn vec_of(i: usize, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|d| ((i * 31 + d * 7) % 97) as f32 / 97.0)
        .collect()
}

/// Inserts ids `<prefix><i>` for `i` in `ids`, each with `vec_of(i, dim)`; asserts 200.
pub fn insert_range(
    c: &reqwest::blocking::Client,
    s: &Server,
    name: &str,
    prefix: &str,
    ids: std::ops::Range<usize>,
    dim: usize,
) {
    let items: Vec<serde_json::Value> = ids
        .map(|i| serde_json::json!({"id": format!("{prefix}{i}"), "vector": vec_of(i, dim)}))
        .collect();
    assert_eq!(insert(c, s, name, serde_json::Value::Array(items)), 200);
}

/// GET `url` and parse its JSON body.
pub fn get_json(c: &reqwest::blocking::Client, url: &str) -> serde_json::Value {
    c.get(url).send().unwrap().json().unwrap()
}

/// Starts a backup of `index` named `name` and waits for its job to end; returns the job.
pub fn backup_and_wait(
    c: &reqwest::blocking::Client,
    s: &Server,
    index: &str,
    name: &str,
) -> serde_json::Value {
    let r: serde_json::Value = c
        .post(s.url(&format!("/index/{index}/backup")))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    wait_job(c, s, r["job_id"].as_str().unwrap())
}
