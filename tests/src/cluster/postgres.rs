//! A private PostgreSQL database on the shared test server.

use super::support::{HOW_TO_START, block_on, host_port, split_url, with_address, with_database};

/// The PostgreSQL server (and a database on it) the tests create their databases from.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The admin URL of the test PostgreSQL server.
pub fn postgres_admin_url() -> String {
    std::env::var("WHARF_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// `host:port` of the test PostgreSQL server (for a [`TcpProxy`] in front of it).
pub fn postgres_server_address() -> String {
    host_port(&postgres_admin_url(), 5432)
}

/// A fresh database `wharf_e2e_<uuid>` on the test server; dropped (best effort) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates the database; fails the test when PostgreSQL cannot be reached.
    pub fn create() -> TestDatabase {
        let admin_url = postgres_admin_url();
        let name = format!("wharf_e2e_{}", uuid::Uuid::new_v4().simple());
        block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|error| {
                    panic!(
                        "PostgreSQL is not reachable at {} ({error}): {HOW_TO_START}, or set \
                         WHARF_TEST_POSTGRES_URL to a server where this user may CREATE DATABASE",
                        redact(&admin_url)
                    )
                });
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut connection)
                .await
                .unwrap_or_else(|error| panic!("CREATE DATABASE {name} failed: {error}"));
            let _ = connection.close().await;
        });
        let url = with_database(&admin_url, &name);
        TestDatabase {
            admin_url,
            name,
            url,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host:port` of the server.
    pub fn server_address(&self) -> String {
        host_port(&self.url, 5432)
    }

    /// The database's URL through another `host:port` (a proxy in front of the server).
    pub fn url_via(&self, address: &str) -> String {
        with_address(&self.url, address)
    }

    /// Runs a query returning one `text` value (e.g. a user's id).
    pub fn query_text(&self, sql: &str) -> String {
        self.query_one(sql)
    }

    /// Runs a query returning one `bigint` (e.g. `SELECT count(*) …`).
    pub fn query_i64(&self, sql: &str) -> i64 {
        self.query_one(sql)
    }

    fn query_one<T>(&self, sql: &str) -> T
    where
        T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        let sql = sql.to_owned();
        block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&self.url)
                .await
                .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.name));
            let value: T = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_one(&mut connection)
                .await
                .unwrap_or_else(|error| panic!("{sql} failed: {error}"));
            let _ = connection.close().await;
            value
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let result = block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&self.admin_url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut connection)
            .await?;
            connection.close().await
        });
        if let Err(error) = result {
            eprintln!("could not drop the test database {}: {error}", self.name);
        }
    }
}

/// A URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    let (scheme, authority, rest) = split_url(url);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}{user}:***@{host}{rest}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
