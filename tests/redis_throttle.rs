//! The failure counters shared through Redis (`throttle::redis`), against a private
//! redis-server: the local counter's rules, shared by every node, and unreachable counters
//! refusing rather than letting a guess through. Skips when redis-server is missing (unless
//! `TLSCHAT_REQUIRE_ALL=1`).

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::redis::Redis;
use tlschat::config::Limits;
use tlschat::throttle::redis::RedisCounter;
use tlschat::throttle::{FailureCounter, Verdict};

fn limits() -> Limits {
    Limits {
        user_failures: 3,
        user_failure_ceiling: 5,
        user_failure_window: Duration::from_secs(60),
        ip_failures: 10,
        ip_failure_window: Duration::from_secs(60),
        throttle_delay: Duration::from_millis(100),
        ..Limits::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A node's counters on the shared Redis.
async fn node(redis: &Redis) -> FailureCounter {
    let shared = tlschat::cluster::Redis::connect(&redis.url, None)
        .await
        .unwrap();
    FailureCounter::Redis(RedisCounter::new(shared, &limits()))
}

async fn verdict(counter: &FailureCounter, name: &str, from: &str) -> Verdict {
    counter
        .attempt(name, ip(from), Instant::now())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_source_past_the_names_limit_is_throttled_and_another_source_is_not() {
    let Some(redis) = Redis::start() else { return };
    let counter = node(&redis).await;
    for _ in 0..3 {
        assert_eq!(
            verdict(&counter, "alice", "203.0.113.1").await,
            Verdict::Check
        );
    }
    assert!(matches!(
        verdict(&counter, "alice", "203.0.113.1").await,
        Verdict::Throttled(_)
    ));
    assert_eq!(
        verdict(&counter, "alice", "203.0.113.2").await,
        Verdict::Check
    );
}

#[tokio::test]
async fn guesses_spread_over_nodes_count_as_one() {
    let Some(redis) = Redis::start() else { return };
    let (a, b) = (node(&redis).await, node(&redis).await);
    verdict(&a, "alice", "203.0.113.1").await;
    verdict(&b, "alice", "203.0.113.1").await;
    verdict(&a, "ALICE", "203.0.113.1").await;
    assert!(matches!(
        verdict(&b, "alice", "203.0.113.1").await,
        Verdict::Throttled(_)
    ));
}

#[tokio::test]
async fn past_the_ceiling_no_source_is_checked() {
    let Some(redis) = Redis::start() else { return };
    let counter = node(&redis).await;
    for i in 1..=5 {
        let from = format!("198.51.100.{i}");
        assert_eq!(verdict(&counter, "alice", &from).await, Verdict::Check);
    }
    assert!(matches!(
        verdict(&counter, "alice", "198.51.100.99").await,
        Verdict::Throttled(_)
    ));
}

#[tokio::test]
async fn a_forgiven_attempt_does_not_count() {
    let Some(redis) = Redis::start() else { return };
    let counter = node(&redis).await;
    for _ in 0..5 {
        assert_eq!(
            verdict(&counter, "alice", "203.0.113.1").await,
            Verdict::Check
        );
        counter.forgive("alice", ip("203.0.113.1")).await;
    }
    assert_eq!(
        verdict(&counter, "alice", "203.0.113.1").await,
        Verdict::Check
    );
}

#[tokio::test]
async fn a_source_over_its_own_limit_is_throttled_on_every_name_with_a_growing_delay() {
    let Some(redis) = Redis::start() else { return };
    let counter = node(&redis).await;
    for i in 0..10 {
        let name = format!("user{i}");
        assert_eq!(verdict(&counter, &name, "192.0.2.1").await, Verdict::Check);
    }
    let Verdict::Throttled(first) = verdict(&counter, "fresh", "192.0.2.1").await else {
        panic!("not throttled");
    };
    let Verdict::Throttled(second) = verdict(&counter, "other", "192.0.2.1").await else {
        panic!("not throttled");
    };
    assert_eq!(first, Duration::from_millis(100));
    assert!(second > first, "{second:?} after {first:?}");
}

#[tokio::test]
async fn unreachable_counters_are_an_error_not_a_free_guess() {
    let Some(redis) = Redis::start() else { return };
    let counter = node(&redis).await;
    drop(redis);
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        counter.attempt("alice", ip("203.0.113.1"), Instant::now()),
    )
    .await
    .expect("the attempt did not give up");
    assert!(error.is_err(), "{error:?}");
}
