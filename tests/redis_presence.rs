//! The cluster's online sessions (`room::presence::redis`) against a private redis-server:
//! one session per name across nodes, takeover returning the replaced session, a replaced
//! session's removal doing nothing, and the sweep of a dead node. Skips when redis-server is
//! missing (unless `TLSCHAT_REQUIRE_ALL=1`).

mod common;

use common::redis::Redis;
use tlschat::event::ConnId;
use tlschat::room::presence::redis::{RedisSessions, SessionRecord};

async fn sessions(redis: &Redis) -> RedisSessions {
    RedisSessions::new(
        tlschat::cluster::Redis::connect(&redis.url, None)
            .await
            .unwrap(),
    )
}

fn session(name: &str, node: u16, local: u64) -> SessionRecord {
    SessionRecord {
        node,
        local,
        name: name.to_owned(),
        peer: "203.0.113.7:50000".parse().unwrap(),
        since_ms: 1_796_126_282_000,
        account: 1,
    }
}

fn names(list: &[SessionRecord]) -> Vec<(&str, ConnId)> {
    list.iter().map(|s| (s.name.as_str(), s.conn())).collect()
}

#[tokio::test]
async fn sessions_of_every_node_are_listed_and_found_in_any_case() {
    let Some(redis) = Redis::start() else { return };
    let online = sessions(&redis).await;
    assert_eq!(online.register(&session("bob", 2, 1)).await.unwrap(), None);
    assert_eq!(
        online.register(&session("Alice", 1, 1)).await.unwrap(),
        None
    );
    let all = online.sessions().await.unwrap();
    assert_eq!(
        names(&all),
        [
            ("Alice", ConnId { node: 1, local: 1 }),
            ("bob", ConnId { node: 2, local: 1 })
        ]
    );
    assert_eq!(
        online.find("ALICE").await.unwrap(),
        Some(session("Alice", 1, 1))
    );
    assert_eq!(online.find("carol").await.unwrap(), None);
}

#[tokio::test]
async fn a_login_on_another_node_takes_over_and_gets_the_session_it_replaced() {
    let Some(redis) = Redis::start() else { return };
    let online = sessions(&redis).await;
    online.register(&session("alice", 1, 7)).await.unwrap();
    let replaced = online.register(&session("alice", 2, 3)).await.unwrap();
    assert_eq!(replaced, Some(session("alice", 1, 7)));
    // The old session ending later removes nothing: the name is the new one's.
    let old = ConnId { node: 1, local: 7 };
    assert!(!online.unregister("alice", old).await.unwrap());
    assert_eq!(
        names(&online.sessions().await.unwrap()),
        [("alice", ConnId { node: 2, local: 3 })]
    );
    // Node 1 no longer lists it: a sweep of node 1 announces nobody.
    assert!(online.sweep(1).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_session_that_ends_is_removed() {
    let Some(redis) = Redis::start() else { return };
    let online = sessions(&redis).await;
    online.register(&session("alice", 1, 7)).await.unwrap();
    assert!(
        online
            .unregister("ALICE", ConnId { node: 1, local: 7 })
            .await
            .unwrap()
    );
    assert!(online.sessions().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_sweep_of_a_dead_node_removes_and_returns_its_sessions_only() {
    let Some(redis) = Redis::start() else { return };
    let online = sessions(&redis).await;
    online.register(&session("alice", 1, 1)).await.unwrap();
    online.register(&session("bob", 1, 2)).await.unwrap();
    online.register(&session("carol", 2, 1)).await.unwrap();
    let mut gone = online.sweep(1).await.unwrap();
    gone.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(gone, [session("alice", 1, 1), session("bob", 1, 2)]);
    assert_eq!(
        names(&online.sessions().await.unwrap()),
        [("carol", ConnId { node: 2, local: 1 })]
    );
    assert!(online.sweep(1).await.unwrap().is_empty(), "swept twice");
}
