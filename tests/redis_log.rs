//! The rooms' shared log on Redis Streams (`room::log::redis`), against a private
//! redis-server: numbering, presence between messages, ranges, the node reader across rooms and
//! nodes, trimming and a lost log's new epoch. Skips when redis-server is missing (unless
//! `TLSCHAT_REQUIRE_ALL=1`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::{REDIS_PASSWORD, Redis};
use tlschat::event::{ConnId, EventKind, RoomName};
use tlschat::room::log::redis::{Entry, LogReader, RedisLogs};

/// The logs on `url`, keeping the newest `keep` messages per room.
async fn logs_at(url: &str, keep: u64) -> RedisLogs {
    RedisLogs::new(
        tlschat::cluster::Redis::connect(url, None).await.unwrap(),
        keep,
    )
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

fn conn(node: u16, local: u64) -> ConnId {
    ConnId { node, local }
}

fn chat(from: &str, text: &str) -> EventKind {
    EventKind::Chat {
        from: Arc::from(from),
        text: text.to_owned(),
    }
}

/// Appends `kind` to `room` now, from `origin`, under epoch "e1".
async fn append(logs: &RedisLogs, room: &RoomName, kind: EventKind, origin: ConnId) -> u64 {
    logs.append(&kind, room, (1_796_126_282_000, Some(origin)), "e1")
        .await
        .unwrap()
        .seq
}

fn texts(events: &[tlschat::event::Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Chat { text, .. } => format!("{}:{text}", e.seq),
            other => panic!("not a chat line: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn messages_are_numbered_from_1_and_presence_between_them_takes_no_number() {
    let Some(redis) = Redis::start() else { return };
    let logs = logs_at(&redis.url, 1000).await;
    let dev = room("#dev");
    assert_eq!(append(&logs, &dev, chat("bob", "a"), conn(1, 1)).await, 1);
    let joined = EventKind::Joined {
        name: Arc::from("carol"),
        conn: conn(2, 7),
    };
    assert_eq!(append(&logs, &dev, joined, conn(2, 7)).await, 1);
    assert_eq!(append(&logs, &dev, chat("bob", "b"), conn(1, 1)).await, 2);
    let tail = logs.tail(&dev).await.unwrap();
    assert_eq!((tail.seq, tail.id.as_str()), (2, "2-0"));
    assert_eq!(tail.epoch.as_deref(), Some("e1"));
}

#[tokio::test]
async fn each_room_has_its_own_numbers() {
    let Some(redis) = Redis::start() else { return };
    let logs = logs_at(&redis.url, 1000).await;
    assert_eq!(
        append(&logs, &room("#a"), chat("bob", "x"), conn(1, 1)).await,
        1
    );
    assert_eq!(
        append(&logs, &room("#b"), chat("bob", "y"), conn(1, 1)).await,
        1
    );
    assert_eq!(
        append(&logs, &room("#a"), chat("bob", "z"), conn(1, 1)).await,
        2
    );
}

#[tokio::test]
async fn a_range_gives_the_newest_messages_oldest_first_without_presence() {
    let Some(redis) = Redis::start() else { return };
    let logs = logs_at(&redis.url, 1000).await;
    let dev = room("#dev");
    for i in 1..=5 {
        append(&logs, &dev, chat("bob", &format!("m{i}")), conn(1, 1)).await;
        let offline = EventKind::Offline { conn: conn(1, 9) };
        append(&logs, &dev, offline, conn(1, 9)).await;
    }
    let (shown, first_kept) = logs.range(&dev, (1, 4), 2).await.unwrap();
    assert_eq!(texts(&shown), ["3:m3", "4:m4"]);
    assert_eq!(first_kept, Some(1));
    let (all, _) = logs.range(&dev, (0, 5), 100).await.unwrap();
    assert_eq!(texts(&all), ["1:m1", "2:m2", "3:m3", "4:m4", "5:m5"]);
}

#[tokio::test]
async fn a_nodes_reader_gets_every_rooms_entries_in_order_from_every_node() {
    let Some(redis) = Redis::start() else { return };
    let node_a = logs_at(&redis.url, 1000).await;
    let node_b = logs_at(&redis.url, 1000).await;
    let (dev, ops) = (room("#dev"), room("#ops"));
    let from = vec![
        (dev.clone(), node_a.tail(&dev).await.unwrap().id),
        (ops.clone(), node_a.tail(&ops).await.unwrap().id),
    ];
    let mut reader = node_a.reader(1).await.unwrap();
    append(&node_a, &dev, chat("alice", "from a"), conn(1, 1)).await;
    append(&node_b, &dev, chat("bob", "from b"), conn(2, 1)).await;
    let left = EventKind::Left {
        name: Arc::from("bob"),
        reason: Some("bye".into()),
        conn: conn(2, 1),
    };
    append(&node_b, &ops, left.clone(), conn(2, 1)).await;
    let read = reader
        .read(&from, None, Duration::from_secs(5), 100)
        .await
        .unwrap();
    let by_room: std::collections::HashMap<RoomName, Vec<Entry>> = read.rooms.into_iter().collect();
    let dev_entries = &by_room[&dev];
    assert_eq!(
        texts(
            &dev_entries
                .iter()
                .map(|e| e.event.clone())
                .collect::<Vec<_>>()
        ),
        ["1:from a", "2:from b"]
    );
    assert_eq!(dev_entries[1].origin, Some(conn(2, 1)));
    assert_eq!(by_room[&ops].len(), 1);
    assert_eq!(by_room[&ops][0].event.kind, left);
}

#[tokio::test]
async fn a_read_with_nothing_new_waits_its_block_time_and_returns_nothing() {
    let Some(redis) = Redis::start() else { return };
    let logs = logs_at(&redis.url, 1000).await;
    let dev = room("#dev");
    append(&logs, &dev, chat("bob", "old"), conn(1, 1)).await;
    let from = vec![(dev.clone(), logs.tail(&dev).await.unwrap().id)];
    let mut reader = logs.reader(1).await.unwrap();
    let read = reader
        .read(&from, None, Duration::from_millis(200), 10)
        .await
        .unwrap();
    assert!(read.rooms.is_empty() && read.inbox.is_empty(), "{read:?}");
}

#[tokio::test]
async fn a_trimmed_log_says_which_numbers_it_still_keeps() {
    let Some(redis) = Redis::start() else { return };
    // MINID ~ trims whole nodes of the stream (100 entries by default): keep 10 of 300.
    let logs = logs_at(&redis.url, 10).await;
    let dev = room("#dev");
    for i in 1..=300 {
        append(&logs, &dev, chat("bob", &format!("m{i}")), conn(1, 1)).await;
    }
    let (shown, first_kept) = logs.range(&dev, (0, 300), 5).await.unwrap();
    assert_eq!(
        texts(&shown),
        ["296:m296", "297:m297", "298:m298", "299:m299", "300:m300"]
    );
    let first_kept = first_kept.unwrap();
    assert!(
        first_kept > 1 && first_kept <= 291,
        "first kept {first_kept}"
    );
    let (older, _) = logs.range(&dev, (0, first_kept - 1), 5).await.unwrap();
    assert!(older.is_empty());
}

/// The first message number `logs` still keeps in `room`.
async fn first_kept(logs: &RedisLogs, room: &RoomName) -> Option<u64> {
    logs.range(room, (0, 1), 1).await.unwrap().1
}

/// Node 7's reader says (in a read's round trip) that it reads `from`.
async fn reads(reader: &mut LogReader, from: &[(RoomName, String)]) {
    reader
        .read(from, None, Duration::from_millis(10), 10)
        .await
        .unwrap();
}

/// With logs keeping 10 messages per room: a reader of node 7 that has read nothing of #dev
/// yet, and 300 messages appended there meanwhile, all still kept.
async fn three_hundred_unread(redis: &Redis) -> (RedisLogs, LogReader, RoomName) {
    let logs = logs_at(&redis.url, 10).await;
    let dev = room("#dev");
    let mut reader = logs.reader(7).await.unwrap();
    reads(&mut reader, &[(dev.clone(), "0-0".to_owned())]).await;
    for i in 1..=300 {
        append(&logs, &dev, chat("bob", &format!("m{i}")), conn(1, 1)).await;
    }
    assert_eq!(
        first_kept(&logs, &dev).await,
        Some(1),
        "node 7 has read nothing"
    );
    (logs, reader, dev)
}

/// After one more append, #dev keeps only about its newest 10 (whole stream nodes go).
async fn trims_after_the_next_append(logs: &RedisLogs, dev: &RoomName) {
    append(logs, dev, chat("bob", "m301"), conn(1, 1)).await;
    let kept = first_kept(logs, dev).await.unwrap();
    assert!(kept > 1 && kept <= 292, "first kept {kept}");
}

#[tokio::test]
async fn a_room_is_not_trimmed_past_what_a_nodes_reader_has_not_read() {
    let Some(redis) = Redis::start() else { return };
    let (logs, mut reader, dev) = three_hundred_unread(&redis).await;
    let start = vec![(dev.clone(), "0-0".to_owned())];
    let read = reader
        .read(&start, None, Duration::from_secs(5), 1000)
        .await
        .unwrap();
    let last = read.rooms[0].1.last().unwrap().id.clone();
    assert_eq!(last, "300-0");
    // The next read says how far node 7 got; the next append may then trim.
    reads(&mut reader, &[(dev.clone(), last)]).await;
    trims_after_the_next_append(&logs, &dev).await;
}

#[tokio::test]
async fn a_reader_that_stops_reading_a_room_no_longer_holds_its_trimming() {
    let Some(redis) = Redis::start() else { return };
    let (logs, mut reader, dev) = three_hundred_unread(&redis).await;
    // Node 7 now reads #ops only.
    reads(&mut reader, &[(room("#ops"), "0-0".to_owned())]).await;
    trims_after_the_next_append(&logs, &dev).await;
}

#[tokio::test]
async fn a_gone_node_no_longer_holds_a_rooms_trimming() {
    let Some(redis) = Redis::start() else { return };
    let (logs, reader, dev) = three_hundred_unread(&redis).await;
    drop(reader);
    let redis_conn = tlschat::cluster::Redis::connect(&redis.url, None)
        .await
        .unwrap();
    tlschat::room::log::redis::forget_reader(&redis_conn, 7, std::slice::from_ref(&dev))
        .await
        .unwrap();
    trims_after_the_next_append(&logs, &dev).await;
}

#[tokio::test]
async fn a_log_redis_lost_starts_again_under_a_new_epoch() {
    let Some(redis) = Redis::start() else { return };
    let logs = logs_at(&redis.url, 1000).await;
    let dev = room("#dev");
    append(&logs, &dev, chat("bob", "a"), conn(1, 1)).await;
    append(&logs, &dev, chat("bob", "b"), conn(1, 1)).await;
    redis.command(&["FLUSHALL"]).await;
    let again = logs
        .append(&chat("bob", "c"), &dev, (0, None), "e2")
        .await
        .unwrap();
    assert_eq!((again.seq, again.epoch.as_str()), (1, "e2"));
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_that_does_not_show_its_password() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url.clone();
    drop(redis);
    let error = match tlschat::cluster::Redis::connect(&url, None).await {
        Ok(_) => panic!("connected to a stopped server"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("redis://:***@127.0.0.1"), "{error}");
    assert!(!error.contains(REDIS_PASSWORD), "{error}");
}
