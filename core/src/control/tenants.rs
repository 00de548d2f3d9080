//! Databases and their tokens (Endee's `/api/v2` admin surface), as a pure registry.
//!
//! A *database* is a namespace: its collections and archives are stored as `<db>.<name>`
//! ([`scoped`]), a name no user can write (user names exclude `.`), so one database's token
//! can only ever name its own. The collections of the *default* namespace (what `/api/v1`
//! and the root token see) carry no prefix.
//!
//! Tokens are `"<db>:<secret>"`; only their SHA-256 is kept, and checking one compares
//! digests in constant time. The host supplies the secret's entropy and the time, writes the
//! encoded registry atomically after every change, and never logs a token.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use thiserror::Error;

/// Format name of the tenants file.
pub const TENANTS_FORMAT: &str = "cairn-tenants";
/// Current tenants-file version.
pub const TENANTS_VERSION: u32 = 1;
/// Database tiers Endee's client accepts (stored and echoed; no quota differs).
pub const DB_TYPES: [&str; 4] = ["starter", "pro", "scale", "enterprise"];
/// Longest database or token name.
pub const MAX_NAME: usize = 48;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    /// Read and write (`"rw"`).
    #[serde(rename = "rw")]
    ReadWrite,
    /// Read only (`"r"`).
    #[serde(rename = "r")]
    Read,
}

impl TokenKind {
    /// Parses Endee's `"rw"` / `"r"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rw" => Some(Self::ReadWrite),
            "r" => Some(Self::Read),
            _ => None,
        }
    }
}

/// One named token of a database: its digest, never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbToken {
    /// Name, unique in its database.
    pub name: String,
    /// What it may do.
    pub token_type: TokenKind,
    /// SHA-256 of the whole token text, hex.
    pub sha256: String,
    /// Creation time (ms).
    pub created_at: u64,
}

/// One database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDb {
    /// Name.
    pub db_name: String,
    /// Tier, one of [`DB_TYPES`].
    pub db_type: String,
    /// A deactivated database's tokens are refused; its data stays.
    pub is_active: bool,
    /// Creation time (ms).
    pub created_at: u64,
    /// Its tokens.
    pub tokens: Vec<DbToken>,
}

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The server's own token (or no auth configured): everything, the default namespace.
    Root,
    /// A database's token: that database only.
    Db {
        /// The database.
        db: String,
        /// A read-only token.
        read_only: bool,
    },
}

/// Why a tenants operation was refused. Hosts map `Invalid` → 400, `*NotFound` → 404,
/// `Exists` → 409, `Denied` / `Inactive` → 401 / 403.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TenantError {
    /// A bad name or type.
    #[error("{0}")]
    Invalid(String),
    /// No such database.
    #[error("database {0:?} not found")]
    DbNotFound(String),
    /// No such token.
    #[error("token {0:?} not found")]
    TokenNotFound(String),
    /// The name is taken.
    #[error("{0} already exists")]
    Exists(String),
    /// The token matches nothing.
    #[error("Invalid token")]
    Denied,
    /// The database is deactivated.
    #[error("database {0:?} is deactivated")]
    Inactive(String),
}

/// The stored name of `name` in database `db` (`None`: the default namespace).
pub fn scoped(db: Option<&str>, name: &str) -> String {
    match db {
        Some(d) => format!("{d}.{name}"),
        None => name.to_string(),
    }
}

/// The user's name of stored name `stored` if it belongs to database `db` (`None`: the
/// default namespace, whose names have no `.`).
pub fn unscoped<'a>(db: Option<&str>, stored: &'a str) -> Option<&'a str> {
    match (db, stored.split_once('.')) {
        (None, None) => Some(stored),
        (Some(d), Some((sd, rest))) if sd == d => Some(rest),
        _ => None,
    }
}

fn check_name(what: &str, n: &str) -> Result<(), TenantError> {
    let ok = !n.is_empty()
        && n.len() <= MAX_NAME
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(TenantError::Invalid(format!(
            "invalid {what} {n:?}: 1 to {MAX_NAME} characters of [A-Za-z0-9_]"
        )))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time equality of two digests.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Serialize, Deserialize)]
struct TenantsFile {
    format: String,
    version: u32,
    dbs: Vec<TenantDb>,
}

/// Every database, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenants {
    dbs: BTreeMap<String, TenantDb>,
}

impl Tenants {
    /// Every database, by name.
    pub fn list(&self) -> impl Iterator<Item = &TenantDb> {
        self.dbs.values()
    }

    /// One database.
    pub fn get(&self, name: &str) -> Result<&TenantDb, TenantError> {
        self.dbs
            .get(name)
            .ok_or_else(|| TenantError::DbNotFound(name.into()))
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut TenantDb, TenantError> {
        self.dbs
            .get_mut(name)
            .ok_or_else(|| TenantError::DbNotFound(name.into()))
    }

    /// Creates database `name` with a first read-write token `default` made of `secret`;
    /// returns the token (`"<db>:<secret>"`), shown this once.
    pub fn create_db(
        &mut self,
        name: &str,
        db_type: &str,
        now: u64,
        secret: &str,
    ) -> Result<String, TenantError> {
        check_name("database name", name)?;
        if !DB_TYPES.contains(&db_type) {
            return Err(TenantError::Invalid(format!(
                "db_type must be one of {DB_TYPES:?}"
            )));
        }
        if self.dbs.contains_key(name) {
            return Err(TenantError::Exists(format!("database {name:?}")));
        }
        self.dbs.insert(
            name.into(),
            TenantDb {
                db_name: name.into(),
                db_type: db_type.into(),
                is_active: true,
                created_at: now,
                tokens: Vec::new(),
            },
        );
        self.create_token(name, "default", TokenKind::ReadWrite, now, secret)
    }

    /// Forgets database `name` (the host has deleted its collections and archives).
    pub fn delete_db(&mut self, name: &str) -> Result<TenantDb, TenantError> {
        self.dbs
            .remove(name)
            .ok_or_else(|| TenantError::DbNotFound(name.into()))
    }

    /// Activates or deactivates database `name`.
    pub fn set_active(&mut self, name: &str, active: bool) -> Result<(), TenantError> {
        self.get_mut(name)?.is_active = active;
        Ok(())
    }

    /// Changes database `name`'s tier.
    pub fn set_type(&mut self, name: &str, db_type: &str) -> Result<(), TenantError> {
        if !DB_TYPES.contains(&db_type) {
            return Err(TenantError::Invalid(format!(
                "db_type must be one of {DB_TYPES:?}"
            )));
        }
        self.get_mut(name)?.db_type = db_type.into();
        Ok(())
    }

    /// Adds token `name` to database `db` made of `secret` (at least 16 characters of
    /// entropy from the host); returns the token text, shown this once.
    pub fn create_token(
        &mut self,
        db: &str,
        name: &str,
        kind: TokenKind,
        now: u64,
        secret: &str,
    ) -> Result<String, TenantError> {
        check_name("token name", name)?;
        if secret.len() < 16 || secret.contains(':') {
            return Err(TenantError::Invalid("token secret too short".into()));
        }
        let d = self.get_mut(db)?;
        if d.tokens.iter().any(|t| t.name == name) {
            return Err(TenantError::Exists(format!("token {name:?}")));
        }
        let token = format!("{db}:{secret}");
        d.tokens.push(DbToken {
            name: name.into(),
            token_type: kind,
            sha256: hex::encode(digest(&token)),
            created_at: now,
        });
        Ok(token)
    }

    /// Removes token `name` of database `db`.
    pub fn delete_token(&mut self, db: &str, name: &str) -> Result<(), TenantError> {
        let d = self.get_mut(db)?;
        let before = d.tokens.len();
        d.tokens.retain(|t| t.name != name);
        if d.tokens.len() == before {
            return Err(TenantError::TokenNotFound(name.into()));
        }
        Ok(())
    }

    /// Who a database token (`"<db>:<secret>"`) acts for. Every token of the named database
    /// is compared, each in constant time.
    pub fn authenticate(&self, token: &str) -> Result<Caller, TenantError> {
        let (db, _) = token.split_once(':').ok_or(TenantError::Denied)?;
        let d = self.dbs.get(db).ok_or(TenantError::Denied)?;
        let given = digest(token);
        let mut found = None;
        for t in &d.tokens {
            let mut want = [0u8; 32];
            if hex::decode_to_slice(&t.sha256, &mut want).is_ok() && same(&given, &want) {
                found = Some(t.token_type);
            }
        }
        let kind = found.ok_or(TenantError::Denied)?;
        if !d.is_active {
            return Err(TenantError::Inactive(db.into()));
        }
        Ok(Caller::Db {
            db: db.into(),
            read_only: kind == TokenKind::Read,
        })
    }

    /// The tenants file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&TenantsFile {
            format: TENANTS_FORMAT.into(),
            version: TENANTS_VERSION,
            dbs: self.dbs.values().cloned().collect(),
        })
        .unwrap_or_default()
    }

    /// Reads a tenants file; anything malformed, or a name no create could have made, is an
    /// error (the host keeps the file aside and starts with no database: tokens fail closed).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let f: TenantsFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if f.format != TENANTS_FORMAT || f.version != TENANTS_VERSION {
            return Err(format!(
                "unknown format {:?} version {}",
                f.format, f.version
            ));
        }
        let mut out = Self::default();
        for d in f.dbs {
            check_name("database name", &d.db_name).map_err(|e| e.to_string())?;
            for t in &d.tokens {
                check_name("token name", &t.name).map_err(|e| e.to_string())?;
                if t.sha256.len() != 64 {
                    return Err(format!("token {:?}: bad digest", t.name));
                }
            }
            out.dbs.insert(d.db_name.clone(), d);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "0123456789abcdef0123";

    #[test]
    fn tokens_name_one_database_and_are_kept_as_digests() {
        let mut t = Tenants::default();
        let tok = t.create_db("alice", "pro", 1, S).unwrap_or_default();
        assert_eq!(tok, format!("alice:{S}"));
        assert_eq!(
            t.authenticate(&tok),
            Ok(Caller::Db {
                db: "alice".into(),
                read_only: false
            })
        );
        let ro = t
            .create_token("alice", "reader", TokenKind::Read, 2, "fedcba9876543210ff")
            .unwrap_or_default();
        assert!(matches!(
            t.authenticate(&ro),
            Ok(Caller::Db {
                read_only: true,
                ..
            })
        ));
        assert_eq!(
            t.authenticate("alice:wrong-secret-000000"),
            Err(TenantError::Denied)
        );
        assert_eq!(
            t.authenticate(&format!("bob:{S}")),
            Err(TenantError::Denied)
        );
        let bytes = t.encode();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(S),
            "no secret stored"
        );
        let back = Tenants::decode(&bytes).unwrap_or_default();
        assert_eq!(back, t);
        t.set_active("alice", false).unwrap_or_default();
        assert_eq!(
            t.authenticate(&tok),
            Err(TenantError::Inactive("alice".into()))
        );
        t.delete_token("alice", "default").unwrap_or_default();
        t.set_active("alice", true).unwrap_or_default();
        assert_eq!(t.authenticate(&tok), Err(TenantError::Denied));
    }

    #[test]
    fn names_are_checked_and_hostile_files_refused() {
        let mut t = Tenants::default();
        for bad in ["", "a.b", "a:b", "../x", &"x".repeat(49)] {
            assert!(t.create_db(bad, "pro", 1, S).is_err(), "{bad}");
        }
        assert!(t.create_db("ok", "gold", 1, S).is_err(), "unknown tier");
        assert!(t.create_db("ok", "pro", 1, "short").is_err());
        assert!(Tenants::decode(br#"{"format":"cairn-tenants","version":1,"dbs":[{"db_name":"../x","db_type":"pro","is_active":true,"created_at":1,"tokens":[]}]}"#).is_err());
        assert!(Tenants::decode(b"not json").is_err());
        assert_eq!(scoped(Some("d"), "c"), "d.c");
        assert_eq!(unscoped(Some("d"), "d.c"), Some("c"));
        assert_eq!(unscoped(Some("d"), "e.c"), None);
        assert_eq!(unscoped(None, "d.c"), None);
        assert_eq!(unscoped(None, "c"), Some("c"));
    }
}
