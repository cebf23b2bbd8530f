//! How to reach the database: [`PostgresConfig`], the client library's
//! configuration built from it, the schema-name rule, and a `Debug` that
//! never shows the password.

use super::error::pg_error;
use crate::error::{Error, Result};
use std::time::Duration;
use tokio_postgres::NoTls;

/// How to reach the database and which schema holds the store.
#[derive(Clone)]
pub struct PostgresConfig {
    /// A libpq-style connection string: `postgres://user:pass@host:port/db`
    /// or `host=... user=... dbname=...`.
    pub url: String,
    /// The PostgreSQL schema (namespace) of the store's tables, so several
    /// stores can share one database. Lowercase letters, digits and `_`,
    /// starting with a letter or `_`, at most 63 bytes. Default `public`.
    pub schema: String,
    /// Most connections the store keeps open. Default 16; writes from more
    /// tasks than this wait for a free connection.
    pub pool_size: usize,
    /// Apply missing migrations when opening (under the migration lock, so
    /// nodes may start at once). Default `false`: opening a schema at another
    /// version fails with [`Error::SchemaVersion`].
    pub auto_migrate: bool,
    /// The node this handle is, when several nodes serve one database at
    /// once: ASCII letters, digits and `_ . -`, starting with a letter or
    /// digit, at most 64 bytes. Opening node A fences the previous handle of
    /// A and no other node; every lock, client record and durable handle
    /// belongs to the node that last wrote it. Default empty: the node `''`,
    /// which a store used by one server at a time is.
    pub node: String,
    /// A named node's lease: the handle renews it every third of this
    /// while it is open, and once it has not for this long another node may
    /// take the node over ([`take_over`](super::PostgresLockStore::take_over)).
    /// Default 10 s; at least 1 ms. Node `''` holds no lease.
    pub lease: Duration,
}

impl PostgresConfig {
    /// The defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "public".into(),
            pool_size: 16,
            auto_migrate: false,
            node: String::new(),
            lease: Duration::from_secs(10),
        }
    }

    /// Uses the schema `schema`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Keeps at most `pool_size` connections.
    pub fn with_pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    /// Applies missing migrations when opening.
    pub fn with_auto_migrate(mut self, auto_migrate: bool) -> Self {
        self.auto_migrate = auto_migrate;
        self
    }

    /// Opens as node `node` (see [`node`](Self::node)).
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    /// Holds a lease of `lease` (see [`lease`](Self::lease)).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The client library's configuration: the URL, plus `search_path` set
    /// to the schema, `lockwal.node` to the node (when there is one) and
    /// `application_name` (when the URL sets none).
    pub(super) fn connection(&self) -> Result<tokio_postgres::Config> {
        validate_schema(&self.schema)?;
        validate_node(&self.node)?;
        let mut pg: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| Error::InvalidInput { field: "url", reason: e.to_string() })?;
        let mut search_path = format!("-c search_path={}", self.schema);
        if !self.node.is_empty() {
            search_path.push_str(&format!(" -c lockwal.node={}", self.node));
        }
        let options = match pg.get_options() {
            Some(options) if !options.trim().is_empty() => format!("{options} {search_path}"),
            _ => search_path,
        };
        pg.options(options);
        if pg.get_application_name().is_none() {
            // Operators see each node's connections in pg_stat_activity.
            match self.node.as_str() {
                "" => pg.application_name("lockwal"),
                node => pg.application_name(format!("lockwal-{node}")),
            };
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        Ok(pg)
    }

    /// One connection outside any pool, for migrations and version checks.
    pub(super) async fn connect(&self) -> Result<tokio_postgres::Client> {
        let (client, connection) = self.connection()?.connect(NoTls).await.map_err(pg_error("connect"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "lockwal: PostgreSQL connection ended with an error");
            }
        });
        Ok(client)
    }
}

impl std::fmt::Debug for PostgresConfig {
    /// Shows everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact_password(&self.url))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("auto_migrate", &self.auto_migrate)
            .field("node", &self.node)
            .field("lease", &self.lease)
            .finish()
    }
}

/// `url` with any password replaced by `***`, in both URL and key=value form.
fn redact_password(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!("{}{}:***{}", &url[..scheme_end + 3], &rest[..colon], &rest[at..]);
        }
        return url.to_owned();
    }
    url.split(' ')
        .map(|part| if part.starts_with("password=") { "password=***" } else { part })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a schema name: a plain lowercase identifier, so it never needs
/// quoting in `search_path` and cannot inject anything.
pub(crate) fn validate_schema(schema: &str) -> Result<()> {
    let invalid = |reason: &str| Error::InvalidInput { field: "schema", reason: format!("{schema:?} {reason}") };
    let mut chars = schema.chars();
    match chars.next() {
        None => return Err(invalid("is empty")),
        Some(c) if !(c.is_ascii_lowercase() || c == '_') => {
            return Err(invalid("must start with a lowercase ASCII letter or '_'"));
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(invalid("may hold only lowercase ASCII letters, digits and '_'"));
    }
    if schema.len() > 63 {
        return Err(invalid("is longer than 63 bytes"));
    }
    if schema.starts_with("pg_") {
        return Err(invalid("starts with pg_, which PostgreSQL reserves"));
    }
    Ok(())
}

/// Checks a node id: empty (no node id), or the rule of
/// [`PostgresConfig::node`], so it needs no quoting in the startup options
/// and matches the schema's check.
pub(crate) fn validate_node(node: &str) -> Result<()> {
    let invalid = |reason: &str| Error::InvalidInput { field: "node", reason: format!("{node:?} {reason}") };
    let Some(first) = node.chars().next() else { return Ok(()) };
    if !first.is_ascii_alphanumeric() {
        return Err(invalid("must start with an ASCII letter or digit"));
    }
    if !node.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(invalid("may hold only ASCII letters, digits, '_', '.' and '-'"));
    }
    if node.len() > 64 {
        return Err(invalid("is longer than 64 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["public", "lockwal", "_x", "t_123_abc", &"a".repeat(63)] {
            assert!(validate_schema(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Public", "1abc", "a-b", "a b", "a\"b", "pg_temp", &"a".repeat(64), "é"] {
            assert!(matches!(validate_schema(bad), Err(Error::InvalidInput { field: "schema", .. })), "{bad:?}");
        }
    }

    #[test]
    fn node_ids_are_plain_names() {
        for ok in ["", "a", "Node-1", "0.b_c", &"n".repeat(64)] {
            assert!(validate_node(ok).is_ok(), "{ok}");
        }
        for bad in ["-a", ".a", "a b", "a=b", "a'b", "a\\b", &"n".repeat(65), "é"] {
            let config = PostgresConfig::new("postgres://u@h/db").with_node(bad);
            assert!(matches!(config.connection(), Err(Error::InvalidInput { field: "node", .. })), "{bad:?}");
        }
    }

    #[test]
    fn passwords_never_reach_debug_output() {
        let cases = [
            ("postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u:secr@t@h/db?x=1", "postgres://u:***@h/db?x=1"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_password(url), shown);
            let debug = format!("{:?}", PostgresConfig::new(url));
            assert!(!debug.contains("secret") && !debug.contains("secr@t"), "{debug}");
        }
    }

    #[test]
    fn connection_sets_search_path_and_keeps_url_options() {
        let config = PostgresConfig::new("postgres://u@h/db?options=-c%20work_mem%3D4MB").with_schema("s1");
        let pg = config.connection().unwrap();
        assert_eq!(pg.get_options(), Some("-c work_mem=4MB -c search_path=s1"));
        assert_eq!(pg.get_application_name(), Some("lockwal"));
        let pg = config.clone().with_node("node-1.a_b").connection().unwrap();
        assert_eq!(pg.get_options(), Some("-c work_mem=4MB -c search_path=s1 -c lockwal.node=node-1.a_b"));
        let bad = PostgresConfig::new("postgres://u@h:notaport/db").connection();
        assert!(matches!(bad, Err(Error::InvalidInput { field: "url", .. })), "{bad:?}");
    }
}
