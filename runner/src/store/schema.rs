//! Opening a database the safe way round: a database written by a newer stuffed is refused
//! with both schema versions (never "migration N was previously applied but is missing"), and
//! the commands that only read open it read-only, so they work on a read-only file or share.
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;

use super::{Db, MIGRATOR};

/// The newest schema version this binary knows (its last embedded migration).
pub fn known_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The newest schema version applied to the database behind `pool` (0 for a new one).
async fn applied_version(pool: &SqlitePool) -> anyhow::Result<i64> {
    let has: Option<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
        .fetch_optional(pool)
        .await?;
    if has.is_none() {
        return Ok(0);
    }
    Ok(sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?.unwrap_or(0))
}

/// Refuses a database whose schema is newer than this binary's.
pub(super) async fn check_not_newer(pool: &SqlitePool) -> anyhow::Result<i64> {
    let (applied, known) = (applied_version(pool).await?, known_version());
    if applied > known {
        anyhow::bail!(
            "this database was written by a newer stuffed: its schema is version {applied}, this binary ({}) reads up to version {known}; use the stuffed that wrote it (or a newer one)",
            env!("CARGO_PKG_VERSION")
        );
    }
    Ok(applied)
}

impl Db {
    /// Opens an existing database for reading only: nothing is migrated or written. A missing
    /// database is an error naming the path (nothing is created); one that still needs
    /// migrations is opened as `open` does.
    pub async fn open_read_only(path: &Path) -> anyhow::Result<Db> {
        Db::must_exist(path)?;
        let opts =
            SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?.read_only(true).busy_timeout(Duration::from_secs(60));
        let connect = |o: SqliteConnectOptions| async move { SqlitePoolOptions::new().max_connections(4).connect_with(o).await };
        let pool = match connect(opts.clone()).await {
            Ok(p) => p,
            // A write-ahead-log database in a directory we may not write: read it as a snapshot.
            Err(_) => connect(opts.immutable(true)).await.with_context(|| format!("opening database {} read-only", path.display()))?,
        };
        let applied = check_not_newer(&pool).await.with_context(|| format!("opening database {}", path.display()))?;
        if applied < known_version() {
            pool.close().await;
            return Db::open(path).await;
        }
        Ok(Db { pool })
    }

    /// Refuses a missing database, for the commands that only read it or change what is
    /// already there: "no results database at PATH" with a hint, and nothing created.
    pub fn must_exist(path: &Path) -> anyhow::Result<()> {
        if !path.exists() {
            anyhow::bail!("no results database at {} (run a sweep first, or pass --db)", path.display());
        }
        Ok(())
    }
}

/// Where the generated SQLite section starts and ends in docs/results-schema.md.
pub const TABLES_BEGIN: &str = "<!-- BEGIN GENERATED: SQLite tables (runner/src/store/schema.rs) -->";
pub const TABLES_END: &str = "<!-- END GENERATED: SQLite tables -->";

/// The generated section of docs/results-schema.md, markers included: the tables, views and
/// indexes of a database with every migration applied, as SQLite holds them (the statements
/// of the migrations with their comments, columns added later appended).
pub async fn tables_doc() -> anyhow::Result<String> {
    let db = Db::open_memory().await?;
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name != '_sqlx_migrations' AND name NOT LIKE 'sqlite%'
         ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'view' THEN 1 ELSE 2 END, name",
    )
    .fetch_all(&db.pool)
    .await?;
    let mut out = format!("{TABLES_BEGIN}\n\nSchema version {} (`runner/migrations/`).\n\n```sql\n", known_version());
    for (_, _, sql) in &rows {
        out.push_str(sql.trim_end());
        out.push_str(";\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push_str(&format!("\n```\n\n{TABLES_END}\n"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/results-schema.md lists the tables of the migrations; `STUFFED_BLESS=1` rewrites
    /// the section.
    #[tokio::test]
    async fn the_schema_doc_lists_the_sqlite_tables_of_the_migrations() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results-schema.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (Some(a), Some(b)) = (doc.find(TABLES_BEGIN), doc.find(TABLES_END)) else {
            panic!("{}: no generated section ({TABLES_BEGIN} ... {TABLES_END})", path.display())
        };
        let current = &doc[a..b + TABLES_END.len() + 1];
        let fresh = tables_doc().await.unwrap();
        assert!(fresh.contains("CREATE TABLE \"evals\"") || fresh.contains("CREATE TABLE evals"), "{fresh}");
        if current != fresh {
            if std::env::var_os("STUFFED_BLESS").is_some() {
                std::fs::write(&path, doc.replacen(current, &fresh, 1)).unwrap();
                return;
            }
            panic!(
                "{} lists other SQLite tables than the migrations make; run `STUFFED_BLESS=1 cargo test -p stuffed --lib schema` and review.\nexpected:\n{fresh}",
                path.display()
            );
        }
    }

    #[tokio::test]
    async fn read_commands_never_write_and_newer_schemas_are_named() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("r.db");
        let db = Db::open(&path).await.unwrap();
        db.upsert_sweep("s", "d", "name: s\n", None, "local").await.unwrap();
        db.pool.close().await;
        let ro = Db::open_read_only(&path).await.unwrap();
        assert_eq!(ro.sweep_names().await.unwrap(), ["s"]);
        let e = ro.upsert_sweep("t", "d", "name: t\n", None, "local").await.unwrap_err();
        assert!(format!("{e:#}").contains("readonly"), "{e:#}");
        ro.pool.close().await;
        // A schema from the future: refused by both opens, with the versions.
        let db = Db::open(&path).await.unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (99, 'future', CURRENT_TIMESTAMP, 1, x'00', 0)")
            .execute(&db.pool)
            .await
            .unwrap();
        db.pool.close().await;
        for e in [Db::open(&path).await.err().unwrap(), Db::open_read_only(&path).await.err().unwrap()] {
            let e = format!("{e:#}");
            assert!(
                e.contains("newer stuffed") && e.contains("version 99") && e.contains(&format!("up to version {}", known_version())),
                "{e}"
            );
        }
    }
}
