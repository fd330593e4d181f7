//! The durability guard: what the database says, at start-up, about whether
//! a commit it acknowledges survives a crash or a failover.
//!
//! An acknowledged deposit is a promise to a customer. Some server settings
//! break it silently — the server answers `COMMIT` before the commit is on
//! disk (PostgreSQL `fsync=off`, `synchronous_commit=off`; MariaDB
//! `innodb_flush_log_at_trx_commit=0|2`), can leave torn pages after a crash
//! (`full_page_writes=off`), lets a binary-log crash recovery roll back
//! acknowledged commits (`sync_binlog≠1` with the binary log on), or does not
//! wait for the synchronous standby that a failover promotes
//! (`synchronous_commit=local`). Start-up refuses those unless the operator
//! accepts them (`--allow-unsafe-durability`). A primary without a
//! synchronous standby is legitimate — one server is a deployment — but a
//! failover to an asynchronous standby may lose acknowledged commits, so it
//! is a warning and the `accounts_store_synchronous_standby` gauge.
//!
//! Reading and judging are apart: the judgement is a pure function of the
//! settings, tested for every value; the reading is one query per server,
//! tested against the real servers.

use std::collections::HashMap;
use std::fmt;

use sqlx::{MySqlPool, PgPool, Row};

/// A server setting under which an acknowledged commit can be lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsafeSetting {
    pub setting: &'static str,
    pub value: String,
    /// What can be lost, and when, in words for the operator.
    pub why: &'static str,
}

impl fmt::Display for UnsafeSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={} ({})", self.setting, self.value, self.why)
    }
}

/// What start-up learnt of the database's durability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durability {
    /// Settings that can lose acknowledged commits; empty when none do.
    pub unsafe_settings: Vec<UnsafeSetting>,
    /// Whether a commit waits for a synchronous standby before it is
    /// acknowledged. `None` where there is nothing to ask (the memory store,
    /// SQLite) or the server is itself a standby.
    pub synchronous_standby: Option<bool>,
}

impl Durability {
    /// The one line start-up refuses with, if anything is unsafe.
    pub fn refusal(&self) -> Option<String> {
        if self.unsafe_settings.is_empty() {
            return None;
        }
        let settings: Vec<String> = self.unsafe_settings.iter().map(|s| s.to_string()).collect();
        Some(format!(
            "refusing to start: the database can lose commits it acknowledges: {}; fix the \
             setting, or pass --allow-unsafe-durability (ACCOUNTS_ALLOW_UNSAFE_DURABILITY=true) \
             to accept it",
            settings.join("; ")
        ))
    }
}

/// The PostgreSQL settings that decide durability, as this session sees
/// them (so a database's or role's `ALTER … SET synchronous_commit` counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresSettings {
    pub fsync: String,
    pub synchronous_commit: String,
    pub full_page_writes: String,
    pub synchronous_standby_names: String,
    pub in_recovery: bool,
}

impl PostgresSettings {
    pub async fn read(pool: &PgPool) -> Result<PostgresSettings, sqlx::Error> {
        let row = sqlx::query(
            "SELECT current_setting('fsync'), current_setting('synchronous_commit'), \
             current_setting('full_page_writes'), current_setting('synchronous_standby_names'), \
             pg_is_in_recovery()",
        )
        .fetch_one(pool)
        .await?;
        Ok(PostgresSettings {
            fsync: row.try_get(0)?,
            synchronous_commit: row.try_get(1)?,
            full_page_writes: row.try_get(2)?,
            synchronous_standby_names: row.try_get(3)?,
            in_recovery: row.try_get(4)?,
        })
    }

    pub fn judge(&self) -> Durability {
        let mut unsafe_settings = Vec::new();
        let mut refuse = |setting, value: &str, why| {
            unsafe_settings.push(UnsafeSetting {
                setting,
                value: value.to_owned(),
                why,
            });
        };
        if self.fsync != "on" {
            refuse(
                "fsync",
                &self.fsync,
                "commits are not forced to disk: a crash of the machine loses or corrupts them",
            );
        }
        match self.synchronous_commit.as_str() {
            "off" => refuse(
                "synchronous_commit",
                &self.synchronous_commit,
                "COMMIT is answered before its WAL is on disk: a crash loses the last commits",
            ),
            "local" => refuse(
                "synchronous_commit",
                &self.synchronous_commit,
                "COMMIT does not wait for the synchronous standby: a failover loses the last commits",
            ),
            _ => {}
        }
        if self.full_page_writes != "on" {
            refuse(
                "full_page_writes",
                &self.full_page_writes,
                "a crash during a page write can leave committed data unrecoverable",
            );
        }
        let synchronous_standby =
            (!self.in_recovery).then(|| !self.synchronous_standby_names.trim().is_empty());
        Durability {
            unsafe_settings,
            synchronous_standby,
        }
    }
}

/// The MariaDB (and MySQL) global variables that decide durability, by
/// name; a variable the server does not have is absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MysqlSettings(pub HashMap<String, String>);

/// Read at once; `SHOW` rather than `@@global.…`, so a variable this
/// server lacks (the semi-synchronous ones, without their plugin) is absent
/// instead of an error.
const MYSQL_VARIABLES: &str = "SHOW GLOBAL VARIABLES WHERE Variable_name IN (\
    'innodb_flush_log_at_trx_commit', 'sync_binlog', 'log_bin', \
    'rpl_semi_sync_master_enabled', 'rpl_semi_sync_master_wait_point')";

impl MysqlSettings {
    pub async fn read(pool: &MySqlPool) -> Result<MysqlSettings, sqlx::Error> {
        let rows = sqlx::query(MYSQL_VARIABLES).fetch_all(pool).await?;
        let mut variables = HashMap::new();
        for row in rows {
            let name: String = row.try_get(0)?;
            let value: String = row.try_get(1)?;
            variables.insert(name.to_ascii_lowercase(), value);
        }
        Ok(MysqlSettings(variables))
    }

    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or_default()
    }

    pub fn judge(&self) -> Durability {
        let mut unsafe_settings = Vec::new();
        let flush = self.get("innodb_flush_log_at_trx_commit");
        if flush != "1" {
            unsafe_settings.push(UnsafeSetting {
                setting: "innodb_flush_log_at_trx_commit",
                value: flush.to_owned(),
                why: "the redo log is not flushed at each commit: a crash loses up to a second \
                      of acknowledged commits",
            });
        }
        let sync_binlog = self.get("sync_binlog");
        if self.get("log_bin").eq_ignore_ascii_case("on") && sync_binlog != "1" {
            unsafe_settings.push(UnsafeSetting {
                setting: "sync_binlog",
                value: sync_binlog.to_owned(),
                why: "with the binary log on, crash recovery rolls back acknowledged commits \
                      whose binary log entry was not yet on disk",
            });
        }
        // Only a semi-synchronous wait after the replica has the commit and
        // before the client hears of it keeps a failover from losing it.
        let semi_sync = self
            .get("rpl_semi_sync_master_enabled")
            .eq_ignore_ascii_case("on")
            && self
                .get("rpl_semi_sync_master_wait_point")
                .eq_ignore_ascii_case("after_sync");
        Durability {
            unsafe_settings,
            synchronous_standby: Some(semi_sync),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postgres() -> PostgresSettings {
        PostgresSettings {
            fsync: "on".into(),
            synchronous_commit: "on".into(),
            full_page_writes: "on".into(),
            synchronous_standby_names: "ANY 1 (\"node2\",\"node3\")".into(),
            in_recovery: false,
        }
    }

    fn refused(durability: &Durability) -> Vec<&'static str> {
        durability
            .unsafe_settings
            .iter()
            .map(|s| s.setting)
            .collect()
    }

    #[test]
    fn a_safe_postgres_primary_with_a_synchronous_standby_passes() {
        let durability = postgres().judge();
        assert_eq!(durability.refusal(), None);
        assert_eq!(durability.synchronous_standby, Some(true));
        for safe in ["on", "remote_write", "remote_apply"] {
            let settings = PostgresSettings {
                synchronous_commit: safe.into(),
                ..postgres()
            };
            assert!(refused(&settings.judge()).is_empty(), "{safe}");
        }
    }

    #[test]
    fn each_postgres_setting_that_loses_commits_is_refused_by_name() {
        for (settings, setting) in [
            (
                PostgresSettings {
                    fsync: "off".into(),
                    ..postgres()
                },
                "fsync",
            ),
            (
                PostgresSettings {
                    synchronous_commit: "off".into(),
                    ..postgres()
                },
                "synchronous_commit",
            ),
            (
                PostgresSettings {
                    synchronous_commit: "local".into(),
                    ..postgres()
                },
                "synchronous_commit",
            ),
            (
                PostgresSettings {
                    full_page_writes: "off".into(),
                    ..postgres()
                },
                "full_page_writes",
            ),
        ] {
            let durability = settings.judge();
            assert_eq!(refused(&durability), [setting]);
            let line = durability.refusal().expect("a refusal");
            assert!(line.contains(&format!("{setting}=")), "{line}");
            assert!(line.contains("--allow-unsafe-durability"), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
        let all = PostgresSettings {
            fsync: "off".into(),
            synchronous_commit: "off".into(),
            full_page_writes: "off".into(),
            ..postgres()
        };
        assert_eq!(
            refused(&all.judge()),
            ["fsync", "synchronous_commit", "full_page_writes"]
        );
    }

    #[test]
    fn a_postgres_primary_without_a_synchronous_standby_is_no_refusal() {
        for names in ["", "  "] {
            let settings = PostgresSettings {
                synchronous_standby_names: names.into(),
                ..postgres()
            };
            let durability = settings.judge();
            assert_eq!(durability.refusal(), None);
            assert_eq!(durability.synchronous_standby, Some(false));
        }
        let standby = PostgresSettings {
            in_recovery: true,
            ..postgres()
        };
        assert_eq!(standby.judge().synchronous_standby, None);
    }

    fn mysql(pairs: &[(&str, &str)]) -> MysqlSettings {
        let mut settings = MysqlSettings(
            [
                ("innodb_flush_log_at_trx_commit", "1"),
                ("sync_binlog", "0"),
                ("log_bin", "OFF"),
                ("rpl_semi_sync_master_enabled", "OFF"),
                ("rpl_semi_sync_master_wait_point", "AFTER_COMMIT"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        for (name, value) in pairs {
            settings.0.insert((*name).to_owned(), (*value).to_owned());
        }
        settings
    }

    #[test]
    fn mariadb_durability_follows_the_redo_log_and_binary_log_settings() {
        // The Debian default: safe, no replica.
        let default = mysql(&[]).judge();
        assert_eq!(default.refusal(), None);
        assert_eq!(default.synchronous_standby, Some(false));
        for flush in ["0", "2"] {
            let durability = mysql(&[("innodb_flush_log_at_trx_commit", flush)]).judge();
            assert_eq!(refused(&durability), ["innodb_flush_log_at_trx_commit"]);
        }
        let binlog = mysql(&[("log_bin", "ON")]).judge();
        assert_eq!(refused(&binlog), ["sync_binlog"]);
        let synced = mysql(&[("log_bin", "ON"), ("sync_binlog", "1")]).judge();
        assert!(refused(&synced).is_empty());
        // A server without the variable at all is not taken for a safe one.
        let mut missing = mysql(&[]);
        missing.0.remove("innodb_flush_log_at_trx_commit");
        assert_eq!(
            refused(&missing.judge()),
            ["innodb_flush_log_at_trx_commit"]
        );
    }

    #[test]
    fn only_a_semi_synchronous_wait_after_sync_counts_as_a_synchronous_standby() {
        let enabled = [("rpl_semi_sync_master_enabled", "ON")];
        assert_eq!(mysql(&enabled).judge().synchronous_standby, Some(false));
        let after_sync = [
            ("rpl_semi_sync_master_enabled", "ON"),
            ("rpl_semi_sync_master_wait_point", "AFTER_SYNC"),
        ];
        assert_eq!(mysql(&after_sync).judge().synchronous_standby, Some(true));
    }
}
