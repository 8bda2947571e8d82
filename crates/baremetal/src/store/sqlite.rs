//! Nodes in one SQLite file, safe for several processes at once: write-ahead logging (readers
//! never wait for the writer), a busy timeout (writers wait for each other instead of failing),
//! and every write in an `IMMEDIATE` transaction that checks the version and the uniqueness
//! rules before it changes anything. Ports are a table of their own whose primary key is the
//! MAC, so two processes can never give one MAC to two nodes.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::codec;
use super::{check_deletable, lookup, validate, Lookup, NodeStore, Versioned};
use crate::node::Node;
use crate::Error;

/// The schema this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;
/// How long a writer waits for another one.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
CREATE TABLE nodes (
    uuid TEXT PRIMARY KEY NOT NULL,
    name TEXT UNIQUE,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE ports (
    address TEXT PRIMARY KEY NOT NULL,
    node_uuid TEXT NOT NULL REFERENCES nodes(uuid) ON DELETE CASCADE
);
CREATE INDEX ports_by_node ON ports(node_uuid);
";

/// A node store in an SQLite database file.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. A new file is made readable by its
    /// owner only: it holds BMC credentials.
    pub fn open(path: &Path) -> Result<SqliteStore, Error> {
        create_private(path)?;
        let conn = Connection::open(path).map_err(db(path, "open"))?;
        SqliteStore::setup(path, conn)
    }

    /// A private database in memory (for tests of code that wants the SQLite behaviour).
    pub fn open_in_memory() -> Result<SqliteStore, Error> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(db(path, "open"))?;
        SqliteStore::setup(path, conn)
    }

    fn setup(path: &Path, mut conn: Connection) -> Result<SqliteStore, Error> {
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db(path, "set busy timeout"))?;
        set_wal(path, &conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db(path, "set synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db(path, "enable foreign keys"))?;
        {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(path, "begin"))?;
            let version: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(db(path, "read schema version"))?;
            match version {
                0 => {
                    tx.execute_batch(SCHEMA)
                        .map_err(db(path, "create schema"))?;
                    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                        .map_err(db(path, "write schema version"))?;
                }
                SCHEMA_VERSION => {}
                v => {
                    return Err(Error::Schema {
                        path: path.to_owned(),
                        message: format!(
                        "schema version {v} is not the one this program knows ({SCHEMA_VERSION})"
                    ),
                    })
                }
            }
            tx.commit().map_err(db(path, "commit"))?;
        }
        Ok(SqliteStore {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A connection left by a panicking thread is still consistent: an open transaction is
        // rolled back when its guard drops.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
        db(&self.path, action)
    }
}

fn db<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + 'a {
    move |source| Error::Database {
        path: path.to_owned(),
        action,
        source,
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            action: "create",
            source,
        }),
    }
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> Result<(), Error> {
    Ok(())
}

/// Switches to write-ahead logging unless the file already uses it. Changing the journal mode
/// needs the database to itself, which the busy handler does not wait for: retry a while.
fn set_wal(path: &Path, conn: &Connection) -> Result<(), Error> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(db(path, "read journal mode"))?;
    if mode.eq_ignore_ascii_case("wal") || mode.eq_ignore_ascii_case("memory") {
        return Ok(());
    }
    let mut tries = 0;
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(e) if is_busy(&e) && tries < 200 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) => return Err(db(path, "enable write-ahead logging")(e)),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn corrupt(node: &str) -> impl FnOnce(String) -> Error + '_ {
    move |message| Error::Corrupt {
        node: node.to_owned(),
        message,
    }
}

fn version_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Checks name and MAC uniqueness against every other node, inside the write transaction.
fn check_unique(
    tx: &rusqlite::Transaction<'_>,
    node: &Node,
    store: &SqliteStore,
) -> Result<(), Error> {
    let uuid = node.uuid.to_string();
    if let Some(name) = &node.name {
        let other: Option<String> = tx
            .query_row(
                "SELECT uuid FROM nodes WHERE name = ?1 AND uuid <> ?2",
                params![name, uuid],
                |r| r.get(0),
            )
            .optional()
            .map_err(store.err("check name"))?;
        if other.is_some() {
            return Err(Error::DuplicateName { name: name.clone() });
        }
    }
    for p in &node.ports {
        let owner: Option<String> = tx
            .query_row(
                "SELECT node_uuid FROM ports WHERE address = ?1 AND node_uuid <> ?2",
                params![p.address.to_string(), uuid],
                |r| r.get(0),
            )
            .optional()
            .map_err(store.err("check MAC"))?;
        if let Some(owner) = owner {
            return Err(Error::DuplicateMac {
                mac: p.address.to_string(),
                owner,
            });
        }
    }
    Ok(())
}

fn write_ports(
    tx: &rusqlite::Transaction<'_>,
    node: &Node,
    store: &SqliteStore,
) -> Result<(), Error> {
    let uuid = node.uuid.to_string();
    tx.execute("DELETE FROM ports WHERE node_uuid = ?1", params![uuid])
        .map_err(store.err("write ports"))?;
    for p in &node.ports {
        tx.execute(
            "INSERT INTO ports (address, node_uuid) VALUES (?1, ?2)",
            params![p.address.to_string(), uuid],
        )
        .map_err(store.err("write ports"))?;
    }
    Ok(())
}

impl NodeStore for SqliteStore {
    fn create(&self, node: &Node) -> Result<Versioned, Error> {
        validate(node)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("begin"))?;
        let uuid = node.uuid.to_string();
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM nodes WHERE uuid = ?1", params![uuid], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err("check uuid"))?;
        if exists.is_some() {
            return Err(Error::DuplicateUuid { uuid });
        }
        check_unique(&tx, node, self)?;
        tx.execute(
            "INSERT INTO nodes (uuid, name, version, body) VALUES (?1, ?2, 1, ?3)",
            params![uuid, node.name, codec::encode(node)],
        )
        .map_err(self.err("insert node"))?;
        write_ports(&tx, node, self)?;
        tx.commit().map_err(self.err("commit"))?;
        Ok(Versioned {
            node: node.clone(),
            version: 1,
        })
    }

    fn get(&self, id: &str) -> Result<Versioned, Error> {
        let conn = self.lock();
        let row: Option<(i64, String)> = match lookup(id) {
            Lookup::Uuid(u) => conn.query_row(
                "SELECT version, body FROM nodes WHERE uuid = ?1",
                params![u.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ),
            Lookup::Name(n) => conn.query_row(
                "SELECT version, body FROM nodes WHERE name = ?1",
                params![n],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ),
        }
        .optional()
        .map_err(self.err("read node"))?;
        let (version, body) = row.ok_or_else(|| Error::NotFound {
            node: id.to_owned(),
        })?;
        Ok(Versioned {
            node: codec::decode(&body).map_err(corrupt(id))?,
            version: version_of(version),
        })
    }

    fn list(&self) -> Result<Vec<Versioned>, Error> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT uuid, version, body FROM nodes ORDER BY uuid")
            .map_err(self.err("list nodes"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(self.err("list nodes"))?;
        let mut out = Vec::new();
        for row in rows {
            let (uuid, version, body) = row.map_err(self.err("list nodes"))?;
            out.push(Versioned {
                node: codec::decode(&body).map_err(corrupt(&uuid))?,
                version: version_of(version),
            });
        }
        Ok(out)
    }

    fn update(&self, node: &Node, expected_version: u64) -> Result<Versioned, Error> {
        validate(node)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("begin"))?;
        let uuid = node.uuid.to_string();
        let found: Option<i64> = tx
            .query_row(
                "SELECT version FROM nodes WHERE uuid = ?1",
                params![uuid],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err("read version"))?;
        let found = version_of(found.ok_or_else(|| Error::NotFound { node: uuid.clone() })?);
        if found != expected_version {
            return Err(Error::VersionConflict {
                node: uuid,
                expected: expected_version,
                found,
            });
        }
        check_unique(&tx, node, self)?;
        let next = found + 1;
        tx.execute(
            "UPDATE nodes SET name = ?1, version = ?2, body = ?3 WHERE uuid = ?4",
            params![node.name, next as i64, codec::encode(node), uuid],
        )
        .map_err(self.err("update node"))?;
        write_ports(&tx, node, self)?;
        tx.commit().map_err(self.err("commit"))?;
        Ok(Versioned {
            node: node.clone(),
            version: next,
        })
    }

    fn delete(&self, id: &str, expected_version: u64) -> Result<(), Error> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("begin"))?;
        let row: Option<(String, i64, String)> = match lookup(id) {
            Lookup::Uuid(u) => tx.query_row(
                "SELECT uuid, version, body FROM nodes WHERE uuid = ?1",
                params![u.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            ),
            Lookup::Name(n) => tx.query_row(
                "SELECT uuid, version, body FROM nodes WHERE name = ?1",
                params![n],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            ),
        }
        .optional()
        .map_err(self.err("read node"))?;
        let (uuid, version, body) = row.ok_or_else(|| Error::NotFound {
            node: id.to_owned(),
        })?;
        let version = version_of(version);
        if version != expected_version {
            return Err(Error::VersionConflict {
                node: uuid,
                expected: expected_version,
                found: version,
            });
        }
        let node = codec::decode(&body).map_err(corrupt(&uuid))?;
        check_deletable(&node)?;
        tx.execute("DELETE FROM nodes WHERE uuid = ?1", params![uuid])
            .map_err(self.err("delete node"))?;
        tx.commit().map_err(self.err("commit"))?;
        Ok(())
    }
}
