//! Test fixtures shared by the store test binaries: a fresh store of each
//! kind (a temporary SQLite file; a freshly created PostgreSQL or MariaDB
//! database with a random name, dropped afterwards), and an engine over it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use accounts::app::InstanceBuilder;
use accounts::engine::{Engine, EngineConfig, Entropy, SeededEntropy};
use accounts::store::{self, EventStore, StoreOptions};
use sqlx::{AssertSqlSafe, Connection};

pub const POSTGRES_ENV: &str = "ACCOUNTS_TEST_POSTGRES_URL";
pub const MYSQL_ENV: &str = "ACCOUNTS_TEST_MYSQL_URL";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Sqlite,
    Postgres,
    Mysql,
}

/// A store that exists for one test; its database or file is removed when
/// this is dropped (also when the test fails).
pub struct TestStore {
    pub store: Arc<dyn EventStore>,
    /// Opens the same data again (for restarts); `None` for memory.
    pub url: Option<String>,
    pub backend: Backend,
    database: Option<TestDatabase>,
    _file: Option<TempFile>,
}

impl TestStore {
    pub async fn open(backend: Backend) -> TestStore {
        TestStore::open_with(backend, test_options()).await
    }

    pub async fn open_with(backend: Backend, options: StoreOptions) -> TestStore {
        let (url, database, file) = match backend {
            Backend::Memory => ("memory:".to_owned(), None, None),
            Backend::Sqlite => {
                let file = TempFile::new("db");
                (format!("sqlite:{}", file.0.display()), None, Some(file))
            }
            Backend::Postgres | Backend::Mysql => {
                let database = TestDatabase::create(backend).await;
                (database.url.clone(), Some(database), None)
            }
        };
        let opened = store::open(&url, &options)
            .await
            .unwrap_or_else(|error| panic!("opening {url}: {error}"));
        TestStore {
            store: opened.store,
            url: (backend != Backend::Memory).then_some(url),
            backend,
            database,
            _file: file,
        }
    }

    /// The database name, for the fault tests that kill its connections.
    pub fn database_name(&self) -> Option<&str> {
        self.database.as_ref().map(|d| d.name.as_str())
    }

    pub fn admin_url(&self) -> Option<&str> {
        self.database.as_ref().map(|d| d.admin_url.as_str())
    }

    pub fn engine(&self, seed: u64, snapshot_every: u64) -> Engine {
        engine_over(self.store.clone(), seed, snapshot_every)
    }
}

pub fn test_options() -> StoreOptions {
    StoreOptions {
        pool_size: 10,
        connect_timeout: Duration::from_secs(10),
        acquire_timeout: Duration::from_secs(5),
    }
}

/// An engine over `store`, wired like every instance.
pub fn engine_over(store: Arc<dyn EventStore>, seed: u64, snapshot_every: u64) -> Engine {
    InstanceBuilder::new()
        .store(store)
        .seed(seed)
        .engine_config(EngineConfig {
            snapshot_every,
            store_timeout: Duration::from_secs(10),
            ..EngineConfig::default()
        })
        .build_engine()
}

/// A path in the temporary directory that is removed (with SQLite's WAL and
/// shared-memory files) when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(extension: &str) -> TempFile {
        let name = format!(
            "accounts-test-{}.{extension}",
            SeededEntropy::from_os().uuid().simple()
        );
        TempFile(std::env::temp_dir().join(name))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The server URL a test may create databases on, or a panic naming the
/// variable (the tests that need one are `#[ignore]`d unless it is set).
pub fn server_url(backend: Backend) -> String {
    let variable = match backend {
        Backend::Postgres => POSTGRES_ENV,
        Backend::Mysql => MYSQL_ENV,
        _ => unreachable!("only server databases have a server URL"),
    };
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: point it at a server where tests may create databases")
    })
}

/// `url` with its database (path) replaced by `name`, query kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a server URL has ://");
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let query = path.find('?').map_or("", |i| &path[i..]);
    format!("{scheme}://{authority}/{name}{query}")
}

/// A database created for one test and dropped afterwards.
pub struct TestDatabase {
    pub backend: Backend,
    pub name: String,
    pub admin_url: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        let admin_url = server_url(backend);
        let name = format!(
            "accounts_test_{}",
            &SeededEntropy::from_os().uuid().simple().to_string()[..16]
        );
        let create = format!("CREATE DATABASE {name}");
        match backend {
            Backend::Postgres => {
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|error| panic!("connecting to {POSTGRES_ENV}: {error}"));
                sqlx::raw_sql(AssertSqlSafe(create))
                    .execute(&mut admin)
                    .await
                    .expect("CREATE DATABASE");
            }
            Backend::Mysql => {
                let mut admin = sqlx::MySqlConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|error| panic!("connecting to {MYSQL_ENV}: {error}"));
                sqlx::raw_sql(AssertSqlSafe(create))
                    .execute(&mut admin)
                    .await
                    .expect("CREATE DATABASE");
            }
            _ => unreachable!(),
        }
        let url = with_database(&admin_url, &name);
        TestDatabase {
            backend,
            name,
            admin_url,
            url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await; a thread with its own runtime can, even while
        // the test's runtime is shutting down.
        let (backend, name, admin_url) = (self.backend, self.name.clone(), self.admin_url.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                match backend {
                    Backend::Postgres => {
                        let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        sqlx::raw_sql(AssertSqlSafe(sql))
                            .execute(&mut admin)
                            .await?;
                    }
                    Backend::Mysql => {
                        let mut admin = sqlx::MySqlConnection::connect(&admin_url).await?;
                        let sql = format!("DROP DATABASE IF EXISTS {name}");
                        sqlx::raw_sql(AssertSqlSafe(sql))
                            .execute(&mut admin)
                            .await?;
                    }
                    _ => {}
                }
                Ok::<(), sqlx::Error>(())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// Closes every connection of `database` except the caller's, as an
/// operator or a failing network would: `pg_terminate_backend` on
/// PostgreSQL, `KILL` on MariaDB. Returns how many were killed.
pub async fn kill_connections(backend: Backend, admin_url: &str, database: &str) -> usize {
    match backend {
        Backend::Postgres => {
            let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await else {
                return 0;
            };
            let killed: Vec<(bool,)> = sqlx::query_as(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(database)
            .fetch_all(&mut admin)
            .await
            .expect("listing the connections to kill");
            killed.len()
        }
        Backend::Mysql => {
            let Ok(mut admin) = sqlx::MySqlConnection::connect(admin_url).await else {
                return 0;
            };
            let ids: Vec<(i64,)> = sqlx::query_as(
                "SELECT ID FROM information_schema.PROCESSLIST
                 WHERE DB = ? AND ID <> CONNECTION_ID()",
            )
            .bind(database)
            .fetch_all(&mut admin)
            .await
            .expect("listing the connections to kill");
            let mut killed = 0;
            for (id,) in ids {
                let kill = format!("KILL {id}");
                if sqlx::raw_sql(AssertSqlSafe(kill))
                    .execute(&mut admin)
                    .await
                    .is_ok()
                {
                    killed += 1;
                }
            }
            killed
        }
        _ => 0,
    }
}

/// A random id from an entropy source.
pub fn uuid(entropy: &dyn Entropy) -> uuid::Uuid {
    entropy.uuid()
}
