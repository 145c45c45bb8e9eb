//! A second connection to a server's SQLite file, to stall or change it under the server.

use std::path::Path;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

/// A second connection to the server's database.
pub async fn second_connection(path: &Path) -> SqliteConnection {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(5));
    SqliteConnection::connect_with(&options).await.unwrap()
}

/// A second connection holding the write lock: the server can read but not write.
pub async fn lock_writes(path: &Path) -> SqliteConnection {
    let mut conn = second_connection(path).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Lets the lock go (nothing was written) and closes the connection.
pub async fn release(mut conn: SqliteConnection) {
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

/// Waits until `sql` (one integer column, one text parameter `bind`) reads `want` from the
/// database at `path`, polling a second connection; fails after `limit`.
pub async fn wait_for_value(path: &Path, sql: &str, bind: &str, want: i64, limit: Duration) {
    let mut conn = second_connection(path).await;
    let deadline = std::time::Instant::now() + limit;
    loop {
        let stored: Option<i64> = sqlx::query_scalar(sql)
            .bind(bind)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        if stored == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql} ({bind}) never read {want} (last {stored:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
