//! Wharf's index: the ports through which services reach the index database (projects,
//! releases, files, users, API tokens, trusted publishing, limits, audit and the journal),
//! the records they exchange, and PyPI's rules over them.
//!
//! This crate holds no database adapter: `wharf-index-sqlite` (`SqliteIndex`, the embedded
//! mode) and `wharf-index-postgres` (`PgIndex`, the scaled mode) implement the ports, each with
//! its own migrations and locking, and the [`rules`] module over the small [`rules::Queries`]
//! trait they provide. Services depend on this crate only; the binary picks an adapter.
//!
//! Callers import the ports with `use wharf_index::prelude::*;`. A wrapper that changes one
//! port delegates the others with [`delegate_ports!`].

mod delegate;
mod ports;
mod records;
pub mod rules;

pub use ports::{
    Accounts, AuditLog, Health, Index, Projects, RateLimits, Releases, Roles, TrustedPublishing,
    Uploads,
};
pub use records::*;

/// The ports (traits) and the error type, to import in one line.
pub mod prelude {
    pub use crate::IndexError;
    pub use crate::ports::{
        Accounts, AuditLog, Health, Index, Projects, RateLimits, Releases, Roles,
        TrustedPublishing, Uploads,
    };
}

/// What [`delegate_ports!`] expands against (not an API).
#[doc(hidden)]
pub mod __delegate {
    pub use crate::ports::*;
    pub use crate::records::*;
    pub use crate::{IndexError, PoolUsage};
    pub use async_trait::async_trait;
}

/// Errors of the index layer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The database could not be reached or answered with an error.
    #[error("index database error")]
    Database(#[from] sqlx::Error),
    /// The migrations could not be applied.
    #[error("index migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A uniqueness rule was violated (the message names what already exists).
    #[error("{0}")]
    Conflict(String),
    /// A stored value could not be decoded.
    #[error("corrupt index row: {0}")]
    Corrupt(String),
}

impl IndexError {
    /// Tells whether retrying the same operation later may succeed (lost connection, busy
    /// database, server restarting, lost race), as opposed to a permanent failure.
    pub fn is_transient(&self) -> bool {
        match self {
            IndexError::Database(error) => sqlx_error_is_transient(error),
            IndexError::Migrate(
                sqlx::migrate::MigrateError::Execute(error)
                | sqlx::migrate::MigrateError::ExecuteMigration(error, _),
            ) => sqlx_error_is_transient(error),
            IndexError::Migrate(_) | IndexError::Conflict(_) | IndexError::Corrupt(_) => false,
        }
    }
}

fn sqlx_error_is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                pg_code_is_transient(pg.code())
            } else {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), including extended codes.
                db.code()
                    .and_then(|code| code.parse::<u32>().ok())
                    .is_some_and(|code| {
                        let primary = code & 0xff;
                        primary == 5 || primary == 6
                    })
            }
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs after which the same operation may succeed later.
fn pg_code_is_transient(code: &str) -> bool {
    matches!(
        code,
        // serialization_failure, deadlock_detected: the transaction lost a race.
        "40001" | "40P01"
        // lock_not_available (lock_timeout), query_canceled (statement_timeout).
        | "55P03" | "57014"
        // admin_shutdown, crash_shutdown, cannot_connect_now: the server is restarting.
        | "57P01" | "57P02" | "57P03"
        // read_only_sql_transaction: connected to a standby during a failover.
        | "25006"
        // idle_in_transaction_session_timeout: the session was ended; reconnect.
        | "25P03"
    ) || code.starts_with("08") // connection_exception and its subclasses
        || code.starts_with("53") // insufficient_resources (too many connections, out of memory)
}

/// Connections of the index's database pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Open connections, idle or in use.
    pub open: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

impl PoolUsage {
    /// The current use of a sqlx pool.
    pub fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolUsage {
        PoolUsage {
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_transient_codes() {
        for code in [
            "40001", "40P01", "57P01", "57P02", "57P03", "08000", "08006", "08001", "53300",
            "55P03", "57014", "25006",
        ] {
            assert!(pg_code_is_transient(code), "{code}");
        }
        for code in [
            "23505", "23503", "42P01", "42601", "22001", "57P04", "XX000",
        ] {
            assert!(!pg_code_is_transient(code), "{code}");
        }
    }

    #[test]
    fn io_and_pool_errors_are_transient() {
        let io = IndexError::Database(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(io.is_transient());
        assert!(IndexError::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(
            IndexError::Migrate(sqlx::migrate::MigrateError::Execute(
                sqlx::Error::PoolTimedOut
            ))
            .is_transient()
        );
        assert!(!IndexError::Database(sqlx::Error::RowNotFound).is_transient());
        assert!(!IndexError::Conflict("x".to_owned()).is_transient());
    }
}
