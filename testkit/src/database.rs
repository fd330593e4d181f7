//! A fresh store of each kind for one test — memory, a temporary SQLite
//! file, or a freshly created PostgreSQL or MariaDB database with a random
//! name, dropped afterwards — and the faults an operator or a network can
//! cause a database: its connections killed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use accounts::engine::{Engine, EngineConfig, Entropy, SeededEntropy};
use accounts::store::{self, EventStore, StoreOptions};
use sqlx::{AssertSqlSafe, Connection};

use crate::instance::TestInstance;

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
                (file.sqlite_url(), None, Some(file))
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

    /// The server database, for the fault tests that kill its connections.
    pub fn database(&self) -> Option<&TestDatabase> {
        self.database.as_ref()
    }

    /// An engine over this store with `snapshot_every`, wired like every
    /// test instance, with a store timeout no healthy database reaches.
    pub fn engine(&self, seed: u64, snapshot_every: u64) -> Engine {
        TestInstance::builder()
            .store(self.store.clone())
            .seed(seed)
            .engine_config(EngineConfig {
                snapshot_every,
                store_timeout: Duration::from_secs(10),
                ..EngineConfig::default()
            })
            .build_engine()
    }
}

/// Store options for tests: waits long enough for a loaded machine.
pub fn test_options() -> StoreOptions {
    StoreOptions {
        pool_size: 10,
        connect_timeout: Duration::from_secs(10),
        acquire_timeout: Duration::from_secs(5),
    }
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

    pub fn sqlite_url(&self) -> String {
        format!("sqlite:{}", self.0.display())
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

/// An `INSERT` of one `AccountClosed` event row written by hand, outside
/// the store, at feed position `position` (a number, or an expression such
/// as `nextval('…')`). The ids go in as text literals, which PostgreSQL,
/// MariaDB and SQLite all coerce.
pub fn event_insert(account: &str, sequence: i64, transaction: &str, position: &str) -> String {
    format!(
        "INSERT INTO events (account_id, sequence_number, transaction_id, event_type, \
         payload, recorded_at_ms, position) \
         VALUES ('{account}', {sequence}, '{transaction}', 'AccountClosed', \
         '{{\"type\":\"AccountClosed\"}}', 0, {position})"
    )
}

/// A plain connection to a server database, outside any store: an
/// administrator's, or a test's own writer.
pub enum ServerConnection {
    Postgres(sqlx::PgConnection),
    Mysql(sqlx::MySqlConnection),
}

impl ServerConnection {
    pub async fn connect(backend: Backend, url: &str) -> Result<ServerConnection, sqlx::Error> {
        Ok(match backend {
            Backend::Postgres => {
                ServerConnection::Postgres(sqlx::PgConnection::connect(url).await?)
            }
            Backend::Mysql => ServerConnection::Mysql(sqlx::MySqlConnection::connect(url).await?),
            _ => unreachable!("only server databases"),
        })
    }

    /// Runs statements assembled at run time (names of test databases,
    /// rows written by hand).
    pub async fn execute(&mut self, sql: String) -> Result<(), sqlx::Error> {
        let sql = sqlx::raw_sql(AssertSqlSafe(sql));
        match self {
            ServerConnection::Postgres(connection) => sql.execute(connection).await.map(|_| ()),
            ServerConnection::Mysql(connection) => sql.execute(connection).await.map(|_| ()),
        }
    }

    /// The server's id of this connection (its backend pid, its thread id).
    pub async fn session_id(&mut self) -> Result<i64, sqlx::Error> {
        match self {
            ServerConnection::Postgres(connection) => {
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(connection)
                    .await?;
                Ok(i64::from(pid))
            }
            ServerConnection::Mysql(connection) => {
                let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                    .fetch_one(connection)
                    .await?;
                Ok(id as i64)
            }
        }
    }

    /// Ends another connection of the server, as an operator would.
    pub async fn kill_session(&mut self, id: i64) -> Result<(), sqlx::Error> {
        match self {
            ServerConnection::Postgres(_) => {
                self.execute(format!("SELECT pg_terminate_backend({id})"))
                    .await
            }
            ServerConnection::Mysql(_) => self.execute(format!("KILL {id}")).await,
        }
    }
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
        TestDatabase::create_on(backend, server_url(backend)).await
    }

    /// A fresh database on the server at `admin_url` (a URL naming any
    /// database there that may create others), not the test variables'.
    pub async fn create_on(backend: Backend, admin_url: String) -> TestDatabase {
        let name = format!(
            "accounts_test_{}",
            &SeededEntropy::from_os().uuid().simple().to_string()[..16]
        );
        let mut admin = ServerConnection::connect(backend, &admin_url)
            .await
            .unwrap_or_else(|error| panic!("connecting to the {backend:?} test server: {error}"));
        admin
            .execute(format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        let url = with_database(&admin_url, &name);
        TestDatabase {
            backend,
            name,
            admin_url,
            url,
        }
    }

    pub async fn admin(&self) -> Result<ServerConnection, sqlx::Error> {
        ServerConnection::connect(self.backend, &self.admin_url).await
    }

    /// An administrator that closes connections to this database.
    pub async fn killer(&self) -> Killer {
        Killer {
            backend: self.backend,
            name: self.name.clone(),
            admin_url: self.admin_url.clone(),
            admin: self.admin().await.expect("an admin connection"),
        }
    }
}

/// Closes connections to a test database other than its own, as an operator
/// or a failing network would (`pg_terminate_backend`, `KILL`), over one
/// kept connection so that it can do so many times a second.
pub struct Killer {
    backend: Backend,
    name: String,
    admin_url: String,
    admin: ServerConnection,
}

impl Killer {
    /// Kills every connection, or only those writing an append or
    /// committing — the kills that leave a commit's outcome unknown.
    /// Returns how many were killed.
    pub async fn kill(&mut self, which: Connections) -> usize {
        let name = &self.name;
        let killed = match &mut self.admin {
            ServerConnection::Postgres(admin) => kill_postgres(admin, name, which).await,
            ServerConnection::Mysql(admin) => kill_mysql(admin, name, which).await,
        };
        match killed {
            Ok(killed) => killed,
            Err(error) => {
                eprintln!("killing connections failed ({error}); reconnecting");
                if let Ok(admin) = ServerConnection::connect(self.backend, &self.admin_url).await {
                    self.admin = admin;
                }
                0
            }
        }
    }
}

/// Which connections [`Killer::kill`] kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connections {
    All,
    /// Running an append's write (its INSERT, its take of the feed
    /// positions) or its COMMIT, or (MariaDB) holding a transaction that has
    /// written rows and is about to commit.
    Committing,
}

async fn kill_postgres(
    admin: &mut sqlx::PgConnection,
    database: &str,
    which: Connections,
) -> Result<usize, sqlx::Error> {
    let only_committing = which == Connections::Committing;
    // The PostgreSQL append is one statement (taking the feed positions from
    // `event_positions`, then inserting) that commits on its own; in a
    // transaction, its COMMIT shows as the active query.
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()
           AND (NOT $2 OR (state = 'active'
                AND (query LIKE '%INSERT INTO events%' OR query LIKE '%event_positions%'
                     OR query ILIKE 'COMMIT%')))",
    )
    .bind(database)
    .bind(only_committing)
    .fetch_all(admin)
    .await?;
    Ok(killed.into_iter().filter(|(done,)| *done).count())
}

async fn kill_mysql(
    admin: &mut sqlx::MySqlConnection,
    database: &str,
    which: Connections,
) -> Result<usize, sqlx::Error> {
    // The MariaDB append is a transaction: killed while it is in COMMIT, or
    // between its last INSERT (or its take of the feed positions) and the
    // COMMIT, its outcome is unknown.
    let query = match which {
        Connections::All => {
            "SELECT ID FROM information_schema.PROCESSLIST
             WHERE DB = ? AND ID <> CONNECTION_ID()"
        }
        Connections::Committing => {
            "SELECT ID FROM information_schema.PROCESSLIST
             WHERE DB = ? AND ID <> CONNECTION_ID()
               AND (INFO LIKE 'COMMIT%' OR INFO LIKE 'UPDATE event_positions%'
                    OR INFO LIKE 'INSERT INTO events%' OR ID IN (
                   SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX
                   WHERE trx_rows_modified > 0))"
        }
    };
    let ids: Vec<(i64,)> = sqlx::query_as(query)
        .bind(database)
        .fetch_all(&mut *admin)
        .await?;
    let mut killed = 0;
    for (id,) in ids {
        // The connection may have ended by itself meanwhile.
        let kill = sqlx::raw_sql(AssertSqlSafe(format!("KILL {id}")));
        if kill.execute(&mut *admin).await.is_ok() {
            killed += 1;
        }
    }
    Ok(killed)
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
                let mut admin = ServerConnection::connect(backend, &admin_url).await?;
                let force = if backend == Backend::Postgres {
                    " WITH (FORCE)"
                } else {
                    ""
                };
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {name}{force}"))
                    .await
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}
