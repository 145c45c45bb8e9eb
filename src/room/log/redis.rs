//! Rooms' logs on Redis Streams, shared by every node of a cluster. Each room is one stream plus a small hash:
//!
//! | key | type | holds | written by | trimmed |
//! |---|---|---|---|---|
//! | `tlschat:room:ROOM:log` | stream | every event of the room, in its one order | [`RedisLogs::append`] (one script) | by the same script: `XTRIM … MINID ~`, below the newest `keep` numbers and below every reader |
//! | `tlschat:room:ROOM:readers` | hash | node id → the number of the last message that node's reader took | [`LogReader::read`] | by the reader and the sweep of a dead node |
//! | `tlschat:room:ROOM:meta` | hash | `seq` (the newest message number), `epoch` | the same script | never |
//! | `tlschat:room:ROOM:roster` | hash | `NODE:LOCAL` → name of every connection in the room | the same script (presence entries) | by presence |
//! | `tlschat:rooms` | set | the rooms with anyone in them (for `/rooms` and `max_rooms`) | the same script | by presence |
//!
//! A message takes the next number and the entry id `SEQ-0`; presence takes no number and the
//! id `SEQ-N` after the last message (`XADD … SEQ-*`), so ids order the room's events and a
//! message's id is its number. The epoch is made when the hash is: if Redis lost its data,
//! numbering starts again under a new epoch, which the nodes notice.
//! A node appends off the rooms' lock, in batches (`room::shared`'s appender), and its one
//! reader delivers what every node appended (`room::cluster`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions};

use crate::cluster::{Redis, RedisUnavailable};
use crate::event::{ConnId, Event, EventKind, NodeId, RoomName, Seq};

/// Entries read per round trip by range reads.
const RANGE_PAGE: usize = 512;

/// The Lua that gives a room's log its epoch (`epoch`), with `meta` and `log` its hash and
/// stream: made from the candidate `ARGV[1]` when the hash has none (a new room, or Redis lost
/// its data), with the count restarting after the stream's last id if the stream survived.
macro_rules! epoch_of {
    () => {
        r"
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = ARGV[1]
    local seq = 0
    local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
    if last[1] then
      seq = tonumber(string.match(last[1][1], '^(%d+)-'))
    end
    redis.call('HSET', meta, 'epoch', epoch, 'seq', seq)
  end
"
    };
}

/// A room's epoch, made if it has none yet (KEYS: meta hash, stream; ARGV: the candidate).
const EPOCH_SCRIPT: &str = concat!(
    "local meta, log = KEYS[1], KEYS[2]\n",
    epoch_of!(),
    "return epoch\n"
);

/// One script call per batch of appends, each event in turn: the epoch (made with the hash,
/// from the caller's candidate), the number (a message takes the next; presence the current),
/// the roster (presence changes it in the same step, so a node that reads roster and stream
/// end together sees one state), and the entry. A hash lost while its stream survived restarts
/// the count after the stream's last id, so ids still increase. One call rather than one per
/// event: Redis serves the nodes' blocked readers once the call ends, so each read carries the
/// whole batch, and the batch costs one command to encode and one flat reply to parse.
///
/// A batch that reaches Redis after its time (`LATE_AFTER`) does nothing and fails with
/// `LATE`: its node has told the senders their lines were not sent, so they must never appear.
///
/// Each room's stream is then trimmed below its newest `keep` numbers, but never past a
/// message some node's reader has not taken yet (the readers hash), unless that reader is more
/// than [`MAX_READER_LAG`] messages further behind: a slow node delays trimming rather than
/// missing lines. No stream holds more than about `keep` + [`MAX_READER_LAG`] entries
/// (presence included, which takes no number).
///
/// KEYS: the set of rooms in use, then per event the room's meta hash, stream, roster and
/// readers hash. ARGV: the candidate epoch, the numbers kept per room, the last moment to act
/// (Redis's clock, ms since the Unix epoch), [`MAX_READER_LAG`], then per event
/// [`ARGS_PER_APPEND`] values: message (`1`/`0`), roster change (`j`/`l`/`r`/`-`), the connection it adds or
/// removes, the one a takeover removes, the member's name, the room, the record.
/// Returns each event's number and epoch, flat.
const APPEND_SCRIPT: &str = concat!(
    r"
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[3]) then
  return redis.error_reply('LATE the batch came after its senders were told it failed')
end
local keep, lag = tonumber(ARGV[2]), tonumber(ARGV[4])
local out = {}
local touched = {}
local n = (#KEYS - 1) / 4
for i = 0, n - 1 do
  local meta, log, roster = KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i]
  local a = 5 + 7 * i
",
    epoch_of!(),
    r"
  local seq
  if ARGV[a] == '1' then
    seq = redis.call('HINCRBY', meta, 'seq', 1)
  else
    seq = tonumber(redis.call('HGET', meta, 'seq'))
  end
  local op = ARGV[a + 1]
  if op == 'j' then
    redis.call('HSET', roster, ARGV[a + 2], ARGV[a + 4])
    redis.call('SADD', KEYS[1], ARGV[a + 5])
  elseif op == 'l' then
    redis.call('HDEL', roster, ARGV[a + 2])
    if redis.call('HLEN', roster) == 0 then
      redis.call('SREM', KEYS[1], ARGV[a + 5])
    end
  elseif op == 'r' then
    redis.call('HDEL', roster, ARGV[a + 3])
    redis.call('HSET', roster, ARGV[a + 2], ARGV[a + 4])
    redis.call('SADD', KEYS[1], ARGV[a + 5])
  end
  redis.call('XADD', log, 'MAXLEN', '~', keep + lag, seq .. '-*', 'e', ARGV[a + 6])
  touched[log] = {KEYS[5 + 4 * i], seq}
  out[2 * i + 1] = seq
  out[2 * i + 2] = epoch
end
for log, room in pairs(touched) do
  local floor = room[2] - keep
  for _, read in ipairs(redis.call('HVALS', room[1])) do
    floor = math.min(floor, tonumber(read))
  end
  floor = math.max(floor, room[2] - keep - lag)
  if floor > 0 then
    redis.call('XTRIM', log, 'MINID', '~', floor)
  end
end
return out
"
);

/// The script's arguments per event (after the four shared ones).
const ARGS_PER_APPEND: usize = 7;

/// How many messages past the kept ones a room's stream keeps for a reader that lags: a node
/// further behind than this misses the oldest (and says so in its log), so that one stuck
/// node cannot make a stream grow without bound.
pub const MAX_READER_LAG: u64 = 100_000;

/// How long after it was sent a batch may still act: the shared connection gives up on a
/// reply after [`crate::cluster::RESPONSE_TIMEOUT`] and the senders are then told their lines
/// were not sent, so a batch must act well before that or not at all. The rest of the timeout
/// covers the reply's way back and an error in the measured clock offset.
const LATE_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// [`RedisLogs::reserve`]: KEYS the set of rooms in use; ARGV the room, the most rooms.
const RESERVE_SCRIPT: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
";

/// [`RedisLogs::release`]: KEYS the set of rooms in use, the room's roster; ARGV the room.
const RELEASE_SCRIPT: &str = r"
if redis.call('HLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[1], ARGV[1]) end
";

/// One event for [`RedisLogs::append_many`]: what, where, when and from whom.
pub type ToAppend<'a> = (&'a EventKind, &'a RoomName, (i64, Option<ConnId>));

/// The reply of the tail's transaction: `seq` and `epoch`, the last entry, the roster.
type TailReply = (
    (Option<u64>, Option<String>),
    StreamRangeReply,
    HashMap<String, String>,
);

/// Why the shared log could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisLogError {
    /// Redis failed or is unreachable.
    #[error(transparent)]
    Redis(#[from] RedisUnavailable),
    /// An entry that this version cannot read.
    #[error("unreadable log entry {id} in {room}")]
    Damaged {
        /// The room.
        room: RoomName,
        /// The entry id.
        id: String,
    },
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The message's number (for presence, the number of the last message before it).
    pub seq: Seq,
    /// The room's epoch: a change means Redis lost the room's log and numbering restarted.
    pub epoch: String,
}

/// The end of a room's log as a node finds it when the room becomes active there: it reads
/// the stream from `id` on, and the room's numbers continue after `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The newest message number (0 for a new room).
    pub seq: Seq,
    /// The last entry's id (`0-0` for an empty stream).
    pub id: String,
    /// The room's epoch, if it has one yet.
    pub epoch: Option<String>,
    /// Who is in the room, on every node, as of [`Tail::id`].
    pub roster: HashMap<ConnId, Arc<str>>,
}

/// One entry read from a room's stream: the event, and the connection that appended it (the
/// sender of a message), so that its node can treat its own line as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stream entry id.
    pub id: String,
    /// The event.
    pub event: Event,
    /// Who appended it, if a member did.
    pub origin: Option<ConnId>,
}

/// The rooms' logs of a cluster, on one Redis; cheap to clone.
#[derive(Clone)]
pub struct RedisLogs {
    redis: Redis,
    append: redis::Script,
    /// Entries kept per room (`history_messages`; `MAXLEN ~`, so a little more).
    keep: u64,
}

impl RedisLogs {
    /// The logs on `redis`; the newest `keep` messages are kept per room.
    pub fn new(redis: Redis, keep: u64) -> Self {
        RedisLogs {
            redis,
            append: redis::Script::new(APPEND_SCRIPT),
            keep,
        }
    }

    fn error(&self, source: redis::RedisError) -> RedisLogError {
        self.redis.error(source).into()
    }

    /// Appends an event to its room's log: a message takes the room's next number. `origin`
    /// is the member that sent it; `epoch` is the epoch to give a log that has none yet.
    pub async fn append(
        &self,
        event: &EventKind,
        room: &RoomName,
        at: (i64, Option<ConnId>),
        epoch: &str,
    ) -> Result<Appended, RedisUnavailable> {
        let mut appended = self
            .append_many(&[(event, room, at)], epoch, LATE_AFTER)
            .await?;
        appended.pop().ok_or_else(|| {
            self.redis.error(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "no reply to an append",
            )))
        })
    }

    /// Appends several events in one round trip (one call of the append script), in order:
    /// each room's events land in the order given. Fails as a whole, and then none of them
    /// lands, then or later: a call that reaches Redis more than `within` (at most
    /// [`LATE_AFTER`]) after it was sent does nothing. After Redis lost its scripts (a
    /// restart) the script is loaded and the batch sent once more.
    pub async fn append_many(
        &self,
        events: &[ToAppend<'_>],
        epoch: &str,
        within: std::time::Duration,
    ) -> Result<Vec<Appended>, RedisUnavailable> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let within = i64::try_from(within.min(LATE_AFTER).as_millis()).unwrap_or(0);
        let not_after = self.redis.redis_now_ms() + within;
        let mut conn = self.redis.conn();
        let call = self.append_call(events, epoch, not_after);
        let replies: Vec<(u64, String)> = match call.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.append
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(|e| self.redis.error(e))?;
                call.query_async(&mut conn).await
            }
            other => other,
        }
        .map_err(|e| self.redis.error(e))?;
        if replies.len() != events.len() {
            return Err(self.redis.error(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the append script answered for a different number of events",
            ))));
        }
        Ok(replies
            .into_iter()
            .map(|(seq, epoch)| Appended { seq, epoch })
            .collect())
    }

    /// The epoch of `room`'s log, made from `candidate` if it has none yet: a node learns the
    /// cluster's epoch (#lobby's) before any member reads a line in it.
    pub async fn epoch(
        &self,
        room: &RoomName,
        candidate: &str,
    ) -> Result<String, RedisUnavailable> {
        redis::Script::new(EPOCH_SCRIPT)
            .key(meta_key(room))
            .key(log_key(room))
            .arg(candidate)
            .invoke_async(&mut self.redis.conn())
            .await
            .map_err(|e| self.redis.error(e))
    }

    /// The rooms anyone is in on any node, with how many are in each (#lobby included),
    /// sorted by name.
    pub async fn rooms_in_use(&self) -> Result<Vec<(RoomName, usize)>, RedisUnavailable> {
        let mut conn = self.redis.conn();
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(ROOMS_IN_USE)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis.error(e))?;
        let rooms: Vec<RoomName> = names
            .iter()
            .filter_map(|name| RoomName::parse(name).ok())
            .collect();
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for room in &rooms {
            pipe.cmd("HLEN").arg(roster_key(room));
        }
        let counts: Vec<usize> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis.error(e))?;
        let mut list: Vec<(RoomName, usize)> = rooms
            .into_iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .collect();
        list.sort_unstable();
        Ok(list)
    }

    /// Takes `room` among the rooms in use on all nodes (#lobby included) if it is one or
    /// fewer than `max` are: false when the cluster is full. In one step, so two nodes cannot
    /// both take the last free room. A room taken but never joined is given back with
    /// [`RedisLogs::release`].
    pub async fn reserve(&self, room: &RoomName, max: usize) -> Result<bool, RedisUnavailable> {
        let taken: u8 = redis::Script::new(RESERVE_SCRIPT)
            .key(ROOMS_IN_USE)
            .arg(room.as_str())
            .arg(max)
            .invoke_async(&mut self.redis.conn())
            .await
            .map_err(|e| self.redis.error(e))?;
        Ok(taken == 1)
    }

    /// Gives `room` back to the rooms in use unless someone is in it.
    pub async fn release(&self, room: &RoomName) -> Result<(), RedisUnavailable> {
        redis::Script::new(RELEASE_SCRIPT)
            .key(ROOMS_IN_USE)
            .key(roster_key(room))
            .arg(room.as_str())
            .invoke_async(&mut self.redis.conn())
            .await
            .map_err(|e| self.redis.error(e))
    }

    /// The append script's call (`EVALSHA`) for `events`, to act no later than `not_after`
    /// (Redis's clock, ms since the Unix epoch): keys and records are formatted
    /// into one reused buffer and copied into the command, so a batch of a thousand costs a
    /// handful of allocations rather than several per event.
    fn append_call(&self, events: &[ToAppend<'_>], epoch: &str, not_after: i64) -> redis::Cmd {
        let mut call = redis::cmd("EVALSHA");
        call.arg(self.append.get_hash())
            .arg(1 + 4 * events.len())
            .arg(ROOMS_IN_USE);
        let mut buf = String::with_capacity(256);
        for (_, room, _) in events {
            for part in ["meta", "log", "roster", "readers"] {
                buf.clear();
                write_room_key(&mut buf, room, part);
                call.arg(buf.as_str());
            }
        }
        call.arg(epoch)
            .arg(self.keep)
            .arg(not_after)
            .arg(MAX_READER_LAG);
        for (event, room, (at_ms, origin)) in events {
            let (op, a, b, name) = roster_change(event);
            call.arg(if event.is_message() { "1" } else { "0" })
                .arg(op)
                .arg(a)
                .arg(b)
                .arg(name)
                .arg(room.as_str());
            buf.clear();
            write_record(&mut buf, event, *at_ms, *origin);
            call.arg(buf.as_str());
        }
        debug_assert_eq!(ARGS_PER_APPEND, 7);
        call
    }

    /// Where a room's log ends now, with its roster at that point (read in one transaction,
    /// so reading the stream after [`Tail::id`] applies every later change exactly once).
    pub async fn tail(&self, room: &RoomName) -> Result<Tail, RedisUnavailable> {
        let mut conn = self.redis.conn();
        let ((seq, epoch), last, roster): TailReply = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(meta_key(room))
            .arg("seq")
            .arg("epoch")
            .xrevrange_count(log_key(room), "+", "-", 1)
            .hgetall(roster_key(room))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis.error(e))?;
        let id = last
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
        let roster = roster
            .into_iter()
            .filter_map(|(conn, name)| Some((conn.parse().ok()?, Arc::from(name))))
            .collect();
        Ok(Tail {
            seq: seq.unwrap_or(0),
            id,
            epoch,
            roster,
        })
    }

    /// The newest `want` messages of `room` numbered in `after+1 ..= upto`, oldest first
    /// (presence is skipped), and the first number still kept in the log (trimming removes
    /// the oldest entries; `None` when nothing is).
    pub async fn range(
        &self,
        room: &RoomName,
        (after, upto): (Seq, Seq),
        want: usize,
    ) -> Result<(Vec<Event>, Option<Seq>), RedisLogError> {
        let mut conn = self.redis.conn();
        let mut newest_first = Vec::new();
        let mut end = format!("{upto}-0");
        let start = format!("{}-0", after + 1);
        while newest_first.len() < want && after < upto {
            let page: StreamRangeReply = conn
                .xrevrange_count(log_key(room), &end, &start, RANGE_PAGE)
                .await
                .map_err(|e| self.error(e))?;
            let Some(oldest) = page.ids.last() else { break };
            end = format!("({}", oldest.id);
            let full = page.ids.len() == RANGE_PAGE;
            for entry in &page.ids {
                let read = decode(room, entry)?;
                if read.event.kind.is_message() && newest_first.len() < want {
                    newest_first.push(read.event);
                }
            }
            if !full {
                break;
            }
        }
        newest_first.reverse();
        let first: StreamRangeReply = conn
            .xrange_count(log_key(room), "-", "+", 1)
            .await
            .map_err(|e| self.error(e))?;
        let first_kept = first.ids.first().and_then(|e| {
            let (seq, n) = split_id(&e.id)?;
            // `S-0` is message S itself; `S-N` is presence after it, so S is gone.
            Some(if n == 0 { seq } else { seq + 1 })
        });
        Ok((newest_first, first_kept))
    }

    /// A connection of its own for [`LogReader::read`]: a blocking read must not hold up (or
    /// be timed out by) the shared connection.
    /// `node` is the reading node: the rooms' readers hashes record how far it has read, so
    /// that no room is trimmed past what it has not taken yet.
    pub async fn reader(&self, node: NodeId) -> Result<LogReader, RedisLogError> {
        Ok(LogReader {
            conn: self.redis.dedicated().await?,
            redis: self.redis.clone(),
            node,
            reported: HashMap::new(),
        })
    }
}

/// A node's reader of the rooms' streams (one connection, one blocking read at a time).
pub struct LogReader {
    conn: MultiplexedConnection,
    redis: Redis,
    node: NodeId,
    /// The number last written to each room's readers hash.
    reported: HashMap<RoomName, Seq>,
}

impl LogReader {
    /// The entries after each room's id (`from`, as [`Tail::id`] or the last entry read), in
    /// each room's order, and those of `inbox` (a node's inbox key and the last id read),
    /// waiting up to `block` for the first; at most `count` per stream.
    pub async fn read(
        &mut self,
        from: &[(RoomName, String)],
        inbox: Option<(&str, &str)>,
        block: Duration,
        count: usize,
    ) -> Result<Read, RedisLogError> {
        let mut keys: Vec<String> = from.iter().map(|(room, _)| log_key(room)).collect();
        let mut ids: Vec<&str> = from.iter().map(|(_, id)| id.as_str()).collect();
        if let Some((key, id)) = inbox {
            keys.push(key.to_owned());
            ids.push(id);
        }
        if keys.is_empty() {
            return Ok(Read::default());
        }
        let block_ms = usize::try_from(block.as_millis()).unwrap_or(usize::MAX);
        let options = StreamReadOptions::default().block(block_ms).count(count);
        // How far this node has read goes ahead of the read, in the same round trip.
        let mut pipe = redis::pipe();
        let progress = self.progress(from, &mut pipe);
        pipe.xread_options(&keys, &ids, &options);
        let mut replies: Vec<redis::Value> = pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| RedisLogError::from(self.redis.error(e)))?;
        for (room, seq) in progress {
            match seq {
                Some(seq) => self.reported.insert(room, seq),
                None => self.reported.remove(&room),
            };
        }
        // Walked as values: a typed reply would build a map per entry, and a node reads every
        // entry of its rooms.
        let reply = replies.pop().unwrap_or(redis::Value::Nil);
        let rooms: HashMap<&[u8], &RoomName> = keys
            .iter()
            .map(|key| key.as_bytes())
            .zip(from.iter().map(|(room, _)| room))
            .collect();
        let mut out = Read::default();
        for (key, entries) in streams(reply) {
            let Some(room) = rooms.get(key.as_slice()) else {
                let inbox: StreamRangeReply = redis::from_redis_value(redis::Value::Array(entries))
                    .map_err(|e| RedisLogError::from(self.redis.error(e.into())))?;
                out.inbox = inbox.ids;
                continue;
            };
            let entries = entries
                .into_iter()
                .map(|entry| decode_value(room, entry))
                .collect::<Result<Vec<_>, _>>()?;
            out.rooms.push(((*room).clone(), entries));
        }
        Ok(out)
    }
}

impl LogReader {
    /// Adds to `pipe` what changed in this node's progress since it was last written: the
    /// number it has read up to in each room of `from`, and its removal from the rooms it no
    /// longer reads. Returns the changes, to note once written.
    fn progress(
        &self,
        from: &[(RoomName, String)],
        pipe: &mut redis::Pipeline,
    ) -> Vec<(RoomName, Option<Seq>)> {
        let mut changes = Vec::new();
        for (room, id) in from {
            let Some((seq, _)) = split_id(id) else {
                continue;
            };
            if self.reported.get(room) != Some(&seq) {
                pipe.hset(readers_key(room), self.node, seq).ignore();
                changes.push((room.clone(), Some(seq)));
            }
        }
        for room in self.reported.keys() {
            if !from.iter().any(|(r, _)| r == room) {
                pipe.hdel(readers_key(room), self.node).ignore();
                changes.push((room.clone(), None));
            }
        }
        changes
    }
}

/// Forgets `node` among the readers of `rooms` (it is gone), so that they trim again.
pub async fn forget_reader(
    redis: &Redis,
    node: NodeId,
    rooms: &[RoomName],
) -> Result<(), RedisUnavailable> {
    if rooms.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for room in rooms {
        pipe.hdel(readers_key(room), node).ignore();
    }
    pipe.query_async::<()>(&mut redis.conn())
        .await
        .map_err(|e| redis.error(e))
}

/// What one read returned.
#[derive(Debug, Default)]
pub struct Read {
    /// Each room's new entries, in its order.
    pub rooms: Vec<(RoomName, Vec<Entry>)>,
    /// The inbox's new entries, raw.
    pub inbox: Vec<StreamId>,
}

impl crate::history::SharedHistory for RedisLogs {
    fn messages<'a>(
        &'a self,
        room: &'a RoomName,
        after: Seq,
        upto: Seq,
        want: usize,
    ) -> crate::history::SharedRead<'a> {
        Box::pin(async move {
            self.range(room, (after, upto), want)
                .await
                .map_err(|e| Box::new(e) as crate::history::ReadError)
        })
    }
}

/// The set of rooms with anyone in them on any node, #lobby included (the script keeps it).
const ROOMS_IN_USE: &str = "tlschat:rooms";

/// `tlschat:room:ROOM:PART`, written to `out`.
fn write_room_key(out: &mut String, room: &RoomName, part: &str) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(out, "tlschat:room:{room}:{part}");
}

fn room_key(room: &RoomName, part: &str) -> String {
    let mut key = String::new();
    write_room_key(&mut key, room, part);
    key
}

fn log_key(room: &RoomName) -> String {
    room_key(room, "log")
}

fn meta_key(room: &RoomName) -> String {
    room_key(room, "meta")
}

fn roster_key(room: &RoomName) -> String {
    room_key(room, "roster")
}

fn readers_key(room: &RoomName) -> String {
    room_key(room, "readers")
}

/// What a presence event does to the roster hash: the script's operation (`j` set, `l`
/// delete, `r` move from the second connection to the first), its connections
/// and the name.
fn roster_change(event: &EventKind) -> (&'static str, String, String, String) {
    match event {
        EventKind::Joined { name, conn } => {
            ("j", conn.to_string(), String::new(), name.to_string())
        }
        EventKind::Left { conn, .. } | EventKind::Offline { conn } => {
            ("l", conn.to_string(), String::new(), String::new())
        }
        EventKind::Replaced { name, old, new } => {
            ("r", new.to_string(), old.to_string(), name.to_string())
        }
        EventKind::Chat { .. } | EventKind::Action { .. } | EventKind::Notice { .. } => {
            ("-", String::new(), String::new(), String::new())
        }
    }
}

/// `SEQ-N` as numbers.
pub(super) fn split_id(id: &str) -> Option<(Seq, u64)> {
    let (seq, n) = id.split_once('-')?;
    Some((seq.parse().ok()?, n.parse().ok()?))
}

/// An entry's one field, `e`: `KIND TIME ORIGIN NAME CONN OLD [TEXT]`, tab-separated, where
/// NAME is the sender or member, CONN the connection (the new one of a takeover), OLD the
/// replaced connection, ORIGIN the member that appended it (each empty when it has none) and
/// TEXT the message or the reason a member left (last, so it may hold tabs; absent when
/// there is none), written to `out`. One field rather than one per part: a node reads every
/// entry of its rooms, and each field costs a parse.
fn write_record(out: &mut String, kind: &EventKind, at_ms: i64, origin: Option<ConnId>) {
    use std::fmt::Write as _;
    let (word, name, new, old, text): (&str, &str, Option<&ConnId>, Option<&ConnId>, _) = match kind
    {
        EventKind::Chat { from, text } => ("chat", from, None, None, Some(text.as_str())),
        EventKind::Action { from, text } => ("action", from, None, None, Some(text.as_str())),
        EventKind::Notice { text } => ("notice", "", None, None, Some(text.as_str())),
        EventKind::Joined { name, conn } => ("joined", name, Some(conn), None, None),
        EventKind::Left { name, reason, conn } => {
            ("left", name, Some(conn), None, reason.as_deref())
        }
        EventKind::Replaced { name, old, new } => ("replaced", name, Some(new), Some(old), None),
        EventKind::Offline { conn } => ("offline", "", Some(conn), None, None),
    };
    // Writing to a String cannot fail.
    let _ = write!(out, "{word}\t{at_ms}\t");
    let conn = |out: &mut String, c: Option<&ConnId>| {
        if let Some(c) = c {
            let _ = write!(out, "{c}");
        }
    };
    conn(out, origin.as_ref());
    let _ = write!(out, "\t{name}\t");
    conn(out, new);
    out.push('\t');
    conn(out, old);
    if let Some(text) = text {
        out.push('\t');
        out.push_str(text);
    }
}

/// The streams of an `XREAD` reply (RESP2 array or RESP3 map), each key with its entries;
/// nothing for a nil reply (the read timed out).
fn streams(reply: redis::Value) -> Vec<(Vec<u8>, Vec<redis::Value>)> {
    use redis::Value;
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(pair) => {
                    let mut pair = pair.into_iter();
                    Some((pair.next()?, pair.next()?))
                }
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs,
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|pair| match pair {
            (Value::BulkString(key), Value::Array(entries)) => Some((key, entries)),
            _ => None,
        })
        .collect()
}

/// An entry of an `XREAD` reply read back (`[id, [field, value, …]]`).
fn decode_value(room: &RoomName, entry: redis::Value) -> Result<Entry, RedisLogError> {
    use redis::Value;
    let damaged = || RedisLogError::Damaged {
        room: room.clone(),
        id: String::new(),
    };
    let Value::Array(parts) = entry else {
        return Err(damaged());
    };
    let mut parts = parts.into_iter();
    let (Some(Value::BulkString(id)), Some(Value::Array(fields))) = (parts.next(), parts.next())
    else {
        return Err(damaged());
    };
    let id = String::from_utf8(id).map_err(|_| damaged())?;
    let record = fields.chunks(2).find_map(|field| match field {
        [Value::BulkString(name), Value::BulkString(value)] if name == b"e" => Some(value),
        _ => None,
    });
    decode_record(room, id, record.map(Vec::as_slice))
}

/// An entry read back; `Damaged` for one this version cannot read.
fn decode(room: &RoomName, entry: &StreamId) -> Result<Entry, RedisLogError> {
    let record = match entry.map.get("e") {
        Some(redis::Value::BulkString(bytes)) => Some(bytes.as_slice()),
        _ => None,
    };
    decode_record(room, entry.id.clone(), record)
}

/// The entry `id` with the record `record` (its `e` field; `None` when it has none).
fn decode_record(
    room: &RoomName,
    id: String,
    record: Option<&[u8]>,
) -> Result<Entry, RedisLogError> {
    let damaged = || RedisLogError::Damaged {
        room: room.clone(),
        id: id.clone(),
    };
    let (seq, _) = split_id(&id).ok_or_else(damaged)?;
    let record = record
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .ok_or_else(damaged)?;
    let mut parts = record.splitn(7, '\t');
    let mut part = || parts.next().ok_or_else(damaged);
    let (word, at_ms, origin) = (part()?, part()?, part()?);
    let (name, conn, old) = (part()?, part()?, part()?);
    let text = parts.next();
    let at_ms: i64 = at_ms.parse().map_err(|_| damaged())?;
    let conn_id = |c: &str| (!c.is_empty()).then(|| c.parse::<ConnId>().ok()).flatten();
    let origin = conn_id(origin);
    let name = || std::sync::Arc::<str>::from(name);
    let text = || text.map(str::to_owned).ok_or_else(damaged);
    let conn = || conn_id(conn).ok_or_else(damaged);
    let kind = match word {
        "chat" => EventKind::Chat {
            from: name(),
            text: text()?,
        },
        "action" => EventKind::Action {
            from: name(),
            text: text()?,
        },
        "notice" => EventKind::Notice { text: text()? },
        "joined" => EventKind::Joined {
            name: name(),
            conn: conn()?,
        },
        "left" => EventKind::Left {
            name: name(),
            reason: text().ok(),
            conn: conn()?,
        },
        "replaced" => EventKind::Replaced {
            name: name(),
            old: conn_id(old).ok_or_else(damaged)?,
            new: conn()?,
        },
        "offline" => EventKind::Offline { conn: conn()? },
        _ => return Err(damaged()),
    };
    Ok(Entry {
        id,
        event: Event {
            room: room.clone(),
            seq,
            at_ms,
            kind,
        },
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &EventKind, at_ms: i64, origin: Option<ConnId>) -> String {
        let mut out = String::new();
        write_record(&mut out, kind, at_ms, origin);
        out
    }

    #[test]
    fn every_kind_of_event_survives_its_record() {
        let c = |local| ConnId { node: 2, local };
        let kinds = [
            EventKind::Chat {
                from: "alice".into(),
                text: "tab\there, and\ttwo".into(),
            },
            EventKind::Action {
                from: "bob".into(),
                text: "waves".into(),
            },
            EventKind::Notice {
                text: "maintenance".into(),
            },
            EventKind::Joined {
                name: "carol".into(),
                conn: c(7),
            },
            EventKind::Left {
                name: "carol".into(),
                reason: None,
                conn: c(7),
            },
            EventKind::Left {
                name: "carol".into(),
                reason: Some(String::new()),
                conn: c(7),
            },
            EventKind::Left {
                name: "carol".into(),
                reason: Some("connection lost".into()),
                conn: c(7),
            },
            EventKind::Replaced {
                name: "dave".into(),
                old: c(8),
                new: c(9),
            },
            EventKind::Offline { conn: c(10) },
        ];
        let room = RoomName::parse("#dev").unwrap();
        for (i, kind) in kinds.into_iter().enumerate() {
            let origin = (i % 2 == 0).then(|| c(1));
            let entry = StreamId {
                id: "5-0".into(),
                map: [(
                    "e".to_owned(),
                    redis::Value::BulkString(record(&kind, 1234, origin).into_bytes()),
                )]
                .into(),
                ..StreamId::default()
            };
            let read = decode(&room, &entry).unwrap();
            assert_eq!(read.event.kind, kind);
            assert_eq!((read.event.seq, read.event.at_ms), (5, 1234));
            assert_eq!(read.origin, origin);
        }
    }

    #[test]
    fn a_record_this_version_cannot_read_is_damaged_not_a_panic() {
        let room = RoomName::parse("#dev").unwrap();
        for bad in [
            "",
            "chat",
            "chat\tnot-a-time\t\talice\t\t",
            "shout\t1\t\ta\t\t\tx",
        ] {
            let entry = StreamId {
                id: "5-0".into(),
                map: [(
                    "e".to_owned(),
                    redis::Value::BulkString(bad.as_bytes().to_vec()),
                )]
                .into(),
                ..StreamId::default()
            };
            assert!(matches!(
                decode(&room, &entry),
                Err(RedisLogError::Damaged { .. })
            ));
        }
    }
}
