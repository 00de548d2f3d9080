//! The command-line tools beside `serve`: check or read a backup archive without a server,
//! and restore one into a data directory while no server uses it.

use crate::db::{Db, DbOptions};
use crate::drive;
use cairn_core::archive::{self, ArchiveDecoder, CHECKPOINT_PATH, LOG_PATH, Manifest, NullSink};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// `cairn backup ...`
#[derive(clap::Subcommand)]
pub enum BackupCommand {
    /// Check an archive whole: its tar structure, manifest and every digest, then its
    /// contents as an index (the checkpoint decoded and the log replayed, every record and
    /// the vector count checked). Exits 1 when anything is wrong. An incremental archive is
    /// checked for structure and digests; its contents need its chain (restore it).
    Verify {
        /// The archive (`.tar`).
        file: PathBuf,
    },
    /// Print an archive's manifest (index, parameters, counts, cut, base, entries with
    /// sizes and digests) as JSON, from its first bytes only: nothing is verified.
    Inspect {
        /// The archive (`.tar`).
        file: PathBuf,
    },
}

/// `cairn restore FILE --data-dir D --index NAME`
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The archive (`.tar`) to restore (a full backup).
    file: PathBuf,
    /// The data directory to restore into; no server may be using it (its lock is taken).
    #[arg(long, env = "NDD_DATA_DIR", default_value = "./cairn-data")]
    data_dir: PathBuf,
    /// The new index's name (must not exist).
    #[arg(long)]
    index: String,
}

/// Bytes per read when streaming an archive.
const CHUNK: usize = 1 << 20;

/// Runs `cairn backup verify|inspect`; the message says what was found.
pub fn backup(cmd: BackupCommand) -> Result<String, String> {
    match cmd {
        BackupCommand::Verify { file } => verify(&file),
        BackupCommand::Inspect { file } => inspect(&file),
    }
}

fn open(file: &Path) -> Result<File, String> {
    File::open(file).map_err(|e| format!("{}: {e}", file.display()))
}

fn verify(file: &Path) -> Result<String, String> {
    let bad = |e: String| format!("{}: invalid backup archive: {e}", file.display());
    let mut f = open(file)?;
    let mut dec = ArchiveDecoder::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(|e| bad(e.to_string()))?;
        if n == 0 {
            break;
        }
        dec.feed(&buf[..n], &mut NullSink)
            .map_err(|e| bad(e.to_string()))?;
    }
    let layout = dec.finish().map_err(|e| bad(e.to_string()))?;
    let m = &layout.manifest;
    if let Some(b) = &m.base {
        return Ok(format!(
            "{}: structure and every digest verified; incremental on {:?} (cut {:?}): its \
             contents are checked when it is restored with its chain",
            file.display(),
            b.name,
            b.cut
        ));
    }
    let range = |path: &str| layout.range(path).map_or((0, 0), |r| (r.offset, r.size));
    let reader = |(at, len): (u64, u64)| -> Result<BufReader<std::io::Take<File>>, String> {
        let mut f = open(file)?;
        f.seek(SeekFrom::Start(at))
            .map_err(|e| bad(e.to_string()))?;
        Ok(BufReader::with_capacity(CHUNK, f.take(len)))
    };
    let mut ix = archive::archived_checkpoint(m, reader(range(CHECKPOINT_PATH))?)
        .map_err(|e| bad(e.to_string()))?;
    let scan = archive::archived_log_deferred(m, &mut ix, reader(range(LOG_PATH))?)
        .map_err(|e| bad(e.to_string()))?;
    Ok(format!(
        "{}: valid: index {:?}, {} vectors ({} replayed from its log), dimension {}, {:?} {:?}",
        file.display(),
        m.index_name,
        ix.len(),
        scan.upserted,
        m.params.dim,
        m.params.space,
        m.params.precision,
    ))
}

fn inspect(file: &Path) -> Result<String, String> {
    let mut f = open(file)?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let mut head = Vec::with_capacity(archive::HEAD_BYTES);
    (&mut f)
        .take(archive::HEAD_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let m: Manifest = archive::manifest_of(&head)
        .ok_or_else(|| format!("{}: not a CairnDB backup archive", file.display()))?;
    let mut v = serde_json::to_value(&m).map_err(|e| e.to_string())?;
    v["archive_bytes"] = serde_json::json!(size);
    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
}

/// Restores archive `args.file` into a data directory no server is using: the archive is
/// taken in as an upload would be (every check), restored as a server restores, and the
/// copy taken in removed.
pub fn restore(args: RestoreArgs) -> Result<String, String> {
    cairn_core::params::validate_index_name(&args.index)
        .map_err(|e| format!("index name {:?}: {e}", args.index))?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("{}: {e}", args.data_dir.display()))?;
    let opts = DbOptions::new(&args.data_dir);
    let db = Db::open(opts).map_err(|e| format!("{}: {e}", args.data_dir.display()))?;
    while !db.ready() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let name = format!("offline-restore-{}", crate::fsutil::now_ms());
    let mut up = drive::begin_upload(&db, &name).map_err(|e| e.to_string())?;
    let mut f = open(&args.file)?;
    let mut failed = None;
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let n = match f.read(&mut chunk) {
            Ok(n) => n,
            Err(e) => {
                failed = Some(crate::db::DbError::Io(e));
                break;
            }
        };
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        if let Err(e) = drive::feed_upload(&db, &mut up, chunk) {
            failed = Some(e);
            break;
        }
    }
    drive::end_upload(&db, up, failed).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let restored = drive::submit_restore(&db, &name, None, &args.index, true);
    let _ = db.delete_backup(&name, false);
    restored.map_err(|e| format!("restore into {:?}: {e}", args.index))?;
    let vectors = db
        .handle(&args.index)
        .map(|h| crate::db::read_lock(&h.index).len())
        .unwrap_or(0);
    Ok(format!(
        "restored {} into index {:?} of {} ({vectors} vectors)",
        args.file.display(),
        args.index,
        args.data_dir.display(),
    ))
}
