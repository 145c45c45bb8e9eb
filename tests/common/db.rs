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
