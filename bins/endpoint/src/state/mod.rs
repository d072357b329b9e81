//! The durable state store: resources as JSON documents in one redb file
//! (`state.redb`) inside a state directory, written in one fsynced
//! transaction per change, and a lock file that keeps a second process off
//! the directory.
//!
//! The store knows nothing about Route 53: a resource is a kind (`vpc`,
//! `resolver_rule`, ...), an id and a JSON document. [`StateDir::load`]
//! gives them back in the order they were first stored, so a model rebuilt
//! from them lists resources as they were created. The endpoint and, later,
//! the redirect proxy each keep their own resources in one.
//!
//! Why redb: every successful API call must survive `kill -9`, so each
//! change is committed with an fsync before the call answers. redb gives
//! crash-safe transactions with a checksummed commit in one file, detects a
//! damaged file instead of returning garbage, and is pure Rust (SQLite would
//! bring a C build; a hand-written log would need its own torn-write
//! recovery and compaction).

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Resources: `kind/id` to `{"seq": N, "value": {...}}`.
const RESOURCES: TableDefinition<'_, &str, &str> = TableDefinition::new("resources");

/// The database file inside the state directory.
pub const DATABASE_FILE: &str = "state.redb";
/// The lock file inside the state directory.
pub const LOCK_FILE: &str = "lock";

/// What can go wrong with a state directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The directory or a file in it cannot be created, opened or read.
    #[error("state directory: {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Another process holds the directory's lock.
    #[error(
        "state directory: {} is locked by another process (another signpost-endpoint with the same --state?); stop it first",
        path.display()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The database file is damaged or not a database.
    #[error("state directory: {} cannot be opened: {source}; it is left as it is (move it away to start with an empty state)", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: redb::Error,
    },
    /// The database file exists but is empty.
    #[error("state directory: {} is empty (0 bytes), not a state database; it is left as it is (remove it to start with an empty state)", path.display())]
    EmptyDatabase {
        /// The database file.
        path: PathBuf,
    },
    /// A stored document is not what this version of the program reads.
    #[error("state directory: {}: resource {key:?} cannot be read: {message}", path.display())]
    Document {
        /// The database file.
        path: PathBuf,
        /// The resource's key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// One change to the stored resources.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreChange {
    /// Store (create or replace) a resource.
    Put {
        /// Its kind.
        kind: &'static str,
        /// Its id.
        id: String,
        /// Its document.
        value: serde_json::Value,
    },
    /// Remove a resource (nothing happens if it is not there).
    Delete {
        /// Its kind.
        kind: &'static str,
        /// Its id.
        id: String,
    },
}

/// A stored resource as loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResource {
    /// Its kind.
    pub kind: String,
    /// Its id.
    pub id: String,
    /// Its document.
    pub value: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    seq: u64,
    value: serde_json::Value,
}

/// An open, locked state directory.
pub struct StateDir {
    path: PathBuf,
    database_path: PathBuf,
    database: Database,
    /// Creation order of every stored key, so replaced resources keep their place.
    order: HashMap<String, u64>,
    next_seq: u64,
    _lock: File,
}

impl std::fmt::Debug for StateDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDir").field("path", &self.path).finish_non_exhaustive()
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

impl StateDir {
    /// Open (creating it if needed) and lock a state directory. Fails if
    /// another process holds it, or if its database cannot be read; an
    /// existing database is never replaced.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StateError> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(io_error(&path))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StateError::Locked { path: lock_path }),
            Err(TryLockError::Error(source)) => return Err(StateError::Io { path: lock_path, source }),
        }
        let database_path = path.join(DATABASE_FILE);
        let database = match std::fs::metadata(&database_path) {
            Ok(metadata) if metadata.len() == 0 => return Err(StateError::EmptyDatabase { path: database_path }),
            Ok(_) => Database::open(&database_path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Database::create(&database_path),
            Err(source) => return Err(StateError::Io { path: database_path, source }),
        }
        .map_err(|source| StateError::Database { path: database_path.clone(), source: source.into() })?;
        let mut state = Self { path, database_path, database, order: HashMap::new(), next_seq: 0, _lock: lock };
        // Read everything once: checks the file and learns the creation order.
        state.load()?;
        Ok(state)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn database_error(&self, source: impl Into<redb::Error>) -> StateError {
        StateError::Database { path: self.database_path.clone(), source: source.into() }
    }

    /// Every stored resource, in the order each was first stored.
    pub fn load(&mut self) -> Result<Vec<StoredResource>, StateError> {
        let transaction = self.database.begin_read().map_err(|error| self.database_error(error))?;
        let table = match transaction.open_table(RESOURCES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(self.database_error(error)),
        };
        let mut resources = Vec::new();
        for entry in table.iter().map_err(|error| self.database_error(error))? {
            let (key, value) = entry.map_err(|error| self.database_error(error))?;
            let key = key.value().to_string();
            let document =
                |message: String| StateError::Document { path: self.database_path.clone(), key: key.clone(), message };
            let envelope: Envelope =
                serde_json::from_str(value.value()).map_err(|error| document(error.to_string()))?;
            let Some((kind, id)) = key.split_once('/') else {
                return Err(document("the key is not kind/id".to_string()));
            };
            resources.push((
                envelope.seq,
                StoredResource { kind: kind.to_string(), id: id.to_string(), value: envelope.value },
            ));
        }
        resources.sort_by_key(|(seq, _)| *seq);
        self.order =
            resources.iter().map(|(seq, resource)| (format!("{}/{}", resource.kind, resource.id), *seq)).collect();
        self.next_seq = resources.last().map_or(0, |(seq, _)| seq + 1);
        Ok(resources.into_iter().map(|(_, resource)| resource).collect())
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Apply changes in one transaction, durable (fsynced) when this returns.
    pub fn commit(&mut self, changes: &[StoreChange]) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        let transaction = self.database.begin_write().map_err(|error| self.database_error(error))?;
        let mut order = self.order.clone();
        let mut next_seq = self.next_seq;
        {
            let mut table = transaction.open_table(RESOURCES).map_err(|error| self.database_error(error))?;
            for change in changes {
                match change {
                    StoreChange::Put { kind, id, value } => {
                        let key = format!("{kind}/{id}");
                        let seq = *order.entry(key.clone()).or_insert_with(|| {
                            next_seq += 1;
                            next_seq - 1
                        });
                        let text = serde_json::to_string(&Envelope { seq, value: value.clone() }).map_err(|error| {
                            StateError::Document {
                                path: self.database_path.clone(),
                                key: key.clone(),
                                message: error.to_string(),
                            }
                        })?;
                        table.insert(key.as_str(), text.as_str()).map_err(|error| self.database_error(error))?;
                    }
                    StoreChange::Delete { kind, id } => {
                        let key = format!("{kind}/{id}");
                        order.remove(&key);
                        table.remove(key.as_str()).map_err(|error| self.database_error(error))?;
                    }
                }
            }
        }
        transaction.commit().map_err(|error| self.database_error(error))?;
        self.order = order;
        self.next_seq = next_seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("signpost-state-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn put(kind: &'static str, id: &str, n: u32) -> StoreChange {
        StoreChange::Put { kind, id: id.to_string(), value: serde_json::json!({ "n": n }) }
    }

    #[test]
    fn resources_come_back_in_creation_order_after_reopening() {
        let dir = temp_dir("order");
        {
            let mut state = StateDir::open(&dir).unwrap();
            assert!(state.is_empty());
            state.commit(&[put("vpc", "vpc-b", 1), put("vpc", "vpc-a", 2)]).unwrap();
            state.commit(&[put("zone", "Z1", 3), put("vpc", "vpc-b", 4)]).unwrap();
            state.commit(&[StoreChange::Delete { kind: "vpc", id: "vpc-a".into() }]).unwrap();
        }
        let mut state = StateDir::open(&dir).unwrap();
        let loaded: Vec<(String, String, u64)> = state
            .load()
            .unwrap()
            .into_iter()
            .map(|resource| (resource.kind, resource.id, resource.value["n"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            loaded,
            vec![("vpc".to_string(), "vpc-b".to_string(), 4), ("zone".to_string(), "Z1".to_string(), 3)]
        );
        drop(state);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_the_lock() {
        let dir = temp_dir("lock");
        let first = StateDir::open(&dir).unwrap();
        let error = StateDir::open(&dir).unwrap_err();
        assert!(matches!(error, StateError::Locked { .. }), "{error}");
        assert!(error.to_string().contains("locked by another process"), "{error}");
        drop(first);
        assert!(StateDir::open(&dir).is_ok(), "the lock goes with the first opener");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_database_is_reported_with_its_path_and_left_alone() {
        let dir = temp_dir("damaged");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(DATABASE_FILE);
        std::fs::write(&file, b"this is not a redb database, but it is somebody's file").unwrap();
        let error = StateDir::open(&dir).unwrap_err();
        assert!(matches!(error, StateError::Database { .. }), "{error}");
        assert!(error.to_string().contains(&file.display().to_string()), "{error}");
        assert_eq!(std::fs::read(&file).unwrap(), b"this is not a redb database, but it is somebody's file");
        std::fs::write(&file, b"").unwrap();
        let error = StateDir::open(&dir).unwrap_err();
        assert!(matches!(error, StateError::EmptyDatabase { .. }), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unreadable_document_names_its_key() {
        let dir = temp_dir("document");
        {
            let state = StateDir::open(&dir).unwrap();
            let transaction = state.database.begin_write().unwrap();
            {
                let mut table = transaction.open_table(RESOURCES).unwrap();
                table.insert("vpc/vpc-1", "{not json").unwrap();
            }
            transaction.commit().unwrap();
        }
        let error = StateDir::open(&dir).unwrap_err();
        assert!(matches!(&error, StateError::Document { key, .. } if key == "vpc/vpc-1"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
