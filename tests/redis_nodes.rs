//! The cluster's node registry (`room::presence::nodes`) against a private redis-server: one
//! live node per name, leases that lapse, dead nodes found and swept, and a name that comes
//! back keeping its id. Skips when redis-server is missing (unless `TLSCHAT_REQUIRE_ALL=1`).

mod common;

use std::time::Duration;

use common::redis::Redis;
use tlschat::room::presence::nodes::{ClaimError, DeadNode, Nodes};

/// A lease short enough to lapse within a test.
const SHORT: Duration = Duration::from_millis(300);

/// The node registry on the test's Redis.
async fn registry(redis: &Redis) -> Nodes {
    Nodes::new(
        tlschat::cluster::Redis::connect(&redis.url, None)
            .await
            .unwrap(),
    )
}

/// Waits (polling, bounded) until `name`'s lease has lapsed.
async fn until_lapsed(nodes: &Nodes, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !nodes.dead().await.unwrap().iter().any(|d| d.name == name) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_name_held_by_a_live_node_is_refused_with_its_name() {
    let Some(redis) = Redis::start() else { return };
    let nodes = registry(&redis).await;
    let first = nodes
        .claim("chat-1", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((first.id, first.unswept), (1, false));
    let refused = nodes.claim("chat-1", Duration::from_secs(60)).await;
    let Err(e @ ClaimError::InUse(_)) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(e.to_string(), "node name chat-1 is in use");
    let other = nodes
        .claim("chat-2", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(other.id, 2);
}

#[tokio::test]
async fn a_renewed_lease_stays_and_a_lapsed_one_makes_the_node_dead() {
    let Some(redis) = Redis::start() else { return };
    let nodes = registry(&redis).await;
    let node = nodes.claim("chat-1", SHORT).await.unwrap();
    assert!(nodes.renew(&node, Duration::from_secs(60)).await.unwrap());
    assert!(nodes.dead().await.unwrap().is_empty());
    assert!(nodes.renew(&node, SHORT).await.unwrap());
    until_lapsed(&nodes, "chat-1").await;
    assert_eq!(
        nodes.dead().await.unwrap(),
        [DeadNode {
            id: 1,
            name: "chat-1".into()
        }]
    );
    assert!(
        !nodes.renew(&node, SHORT).await.unwrap(),
        "a lapsed lease renewed"
    );
}

#[tokio::test]
async fn a_dead_node_once_swept_is_gone_and_its_name_comes_back_clean_with_its_id() {
    let Some(redis) = Redis::start() else { return };
    let nodes = registry(&redis).await;
    nodes.claim("chat-1", SHORT).await.unwrap();
    until_lapsed(&nodes, "chat-1").await;
    let dead = nodes.dead().await.unwrap().remove(0);
    assert!(nodes.swept(&dead).await.unwrap());
    assert!(!nodes.swept(&dead).await.unwrap(), "swept twice");
    assert!(nodes.dead().await.unwrap().is_empty());
    let back = nodes
        .claim("chat-1", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((back.id, back.unswept), (1, false));
}

#[tokio::test]
async fn a_name_claimed_again_before_its_sweep_says_its_members_are_unswept() {
    let Some(redis) = Redis::start() else { return };
    let nodes = registry(&redis).await;
    nodes.claim("chat-1", SHORT).await.unwrap();
    until_lapsed(&nodes, "chat-1").await;
    let back = nodes
        .claim("chat-1", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((back.id, back.unswept), (1, true));
    // Live again: no other node may sweep it.
    assert!(nodes.dead().await.unwrap().is_empty());
    let stale = DeadNode {
        id: 1,
        name: "chat-1".into(),
    };
    assert!(!nodes.swept(&stale).await.unwrap());
}

#[tokio::test]
async fn a_released_name_is_free_at_once() {
    let Some(redis) = Redis::start() else { return };
    let nodes = registry(&redis).await;
    let node = nodes
        .claim("chat-1", Duration::from_secs(60))
        .await
        .unwrap();
    nodes.release(&node).await.unwrap();
    assert!(
        nodes.dead().await.unwrap().is_empty(),
        "a clean stop is no death"
    );
    let again = nodes
        .claim("chat-1", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((again.id, again.unswept), (1, false));
}
