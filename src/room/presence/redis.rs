//! Who is online on every node of a cluster, in Redis: one session per name (a login of the
//! name on any node takes the session over in one atomic step, which returns the session it
//! replaced so that its node can close it), each node's sessions listed for the sweep after
//! that node dies, and the lookups behind `/msg`, `admin who` and `admin kick`. The storage
//! side of the coming `Presence::Redis`; not wired yet. Keys:
//!
//! | key | type | holds | written by |
//! |---|---|---|---|
//! | `tlschat:online` | hash | lower-case name → the session (JSON: connection, name, source, since, account) | register, unregister, sweep |
//! | `tlschat:online:node:ID` | set | lower-case names of node ID's sessions | the same |
//! | `tlschat:positions:ACCOUNT` | hash | room → the read position a session that ended reached (expires after 5 min) | the session's node, before its left line |

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::cluster::{Redis, RedisUnavailable};
use crate::event::{ConnId, NodeId, RoomName, Seq};

const ONLINE: &str = "tlschat:online";

/// Sets the session of a name; returns the one it replaced (or nil).
const REGISTER_SCRIPT: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
if old then
  local old_node = cjson.decode(old)['node']
  if 'tlschat:online:node:' .. old_node ~= KEYS[2] then
    redis.call('SREM', 'tlschat:online:node:' .. old_node, ARGV[1])
  end
end
return old
";

/// Removes a name's session if it is still connection ARGV[2]:ARGV[3] (a session that was
/// taken over removes nothing).
const UNREGISTER_SCRIPT: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local s = cjson.decode(cur)
if tostring(s['node']) ~= ARGV[2] or tostring(s['local']) ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
";

/// Removes every session still held by node ARGV[1]; returns them.
const SWEEP_SCRIPT: &str = r"
local gone = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local cur = redis.call('HGET', KEYS[1], name)
  if cur and tostring(cjson.decode(cur)['node']) == ARGV[1] then
    redis.call('HDEL', KEYS[1], name)
    table.insert(gone, cur)
  end
end
redis.call('DEL', KEYS[2])
return gone
";

/// One logged-in session as every node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The node it is on.
    pub node: NodeId,
    /// Its number there.
    pub local: u64,
    /// The account's name as created.
    pub name: String,
    /// Where the client connects from.
    pub peer: SocketAddr,
    /// Login time, ms since the Unix epoch.
    pub since_ms: i64,
    /// The account's row id.
    pub account: i64,
}

impl SessionRecord {
    /// Its connection id.
    pub fn conn(&self) -> ConnId {
        ConnId {
            node: self.node,
            local: self.local,
        }
    }
}

/// The cluster's online sessions on one Redis; cheap to clone.
#[derive(Clone)]
pub struct RedisSessions {
    redis: Redis,
}

impl RedisSessions {
    /// The sessions on `redis`.
    pub fn new(redis: Redis) -> Self {
        RedisSessions { redis }
    }

    /// Makes `session` the one of its name, on its node; returns the session it took over
    /// (on any node), which that node must close without a left line.
    pub async fn register(
        &self,
        session: &SessionRecord,
    ) -> Result<Option<SessionRecord>, RedisUnavailable> {
        let mut conn = self.redis.conn();
        let json = serde_json::to_string(session).expect("a session always serializes");
        let old: Option<String> = redis::Script::new(REGISTER_SCRIPT)
            .key(ONLINE)
            .key(node_key(session.node))
            .arg(session.name.to_ascii_lowercase())
            .arg(json)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.redis.error(e))?;
        Ok(old.and_then(|j| parse(&j)))
    }

    /// Removes the session of `name` if it is still `conn` (`false`: it was taken over, or
    /// is gone already).
    pub async fn unregister(&self, name: &str, conn: ConnId) -> Result<bool, RedisUnavailable> {
        let mut redis_conn = self.redis.conn();
        let removed: u8 = redis::Script::new(UNREGISTER_SCRIPT)
            .key(ONLINE)
            .key(node_key(conn.node))
            .arg(name.to_ascii_lowercase())
            .arg(conn.node)
            .arg(conn.local)
            .invoke_async(&mut redis_conn)
            .await
            .map_err(|e| self.redis.error(e))?;
        Ok(removed == 1)
    }

    /// The session of `name` (any letter case), wherever it is.
    pub async fn find(&self, name: &str) -> Result<Option<SessionRecord>, RedisUnavailable> {
        let mut conn = self.redis.conn();
        let json: Option<String> = redis::cmd("HGET")
            .arg(ONLINE)
            .arg(name.to_ascii_lowercase())
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis.error(e))?;
        Ok(json.and_then(|j| parse(&j)))
    }

    /// Every session of the cluster, by name (case-insensitively).
    pub async fn sessions(&self) -> Result<Vec<SessionRecord>, RedisUnavailable> {
        let mut conn = self.redis.conn();
        let all: Vec<String> = redis::cmd("HVALS")
            .arg(ONLINE)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis.error(e))?;
        let mut out: Vec<SessionRecord> = all.iter().filter_map(|j| parse(j)).collect();
        out.sort_by_key(|s| s.name.to_ascii_lowercase());
        Ok(out)
    }

    /// Removes every session a dead node still holds and returns them, to be announced as
    /// left; a session taken over by another node meanwhile is not touched.
    pub async fn sweep(&self, node: NodeId) -> Result<Vec<SessionRecord>, RedisUnavailable> {
        let mut conn = self.redis.conn();
        let gone: Vec<String> = redis::Script::new(SWEEP_SCRIPT)
            .key(ONLINE)
            .key(node_key(node))
            .arg(node)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.redis.error(e))?;
        Ok(gone.iter().filter_map(|j| parse(j)).collect())
    }
}

/// Raises a user's shared read positions (pairs of room and number in ARGV); kept for
/// ARGV[1] seconds after the last change.
const POSITIONS_SCRIPT: &str = r"
for i = 2, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > cur then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
";

/// How long a session's last read positions stay in Redis: long enough for the store's writer
/// on the node that saved them to commit them too.
const POSITIONS_TTL_SECS: u64 = 300;

impl RedisSessions {
    /// Records where a session that ends had read (they only move forward), so that a login
    /// on another node finds them before the store has them.
    pub async fn save_positions(
        &self,
        account: i64,
        positions: &[(RoomName, Seq)],
    ) -> Result<(), RedisUnavailable> {
        if positions.is_empty() {
            return Ok(());
        }
        let script = redis::Script::new(POSITIONS_SCRIPT);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(positions_key(account))
            .arg(POSITIONS_TTL_SECS);
        for (room, seq) in positions {
            invocation.arg(room.as_str()).arg(*seq);
        }
        let _: u8 = invocation
            .invoke_async(&mut self.redis.conn())
            .await
            .map_err(|e| self.redis.error(e))?;
        Ok(())
    }

    /// The read positions recently saved by sessions of `account`, on any node.
    pub async fn positions(&self, account: i64) -> Result<Vec<(RoomName, Seq)>, RedisUnavailable> {
        let all: Vec<(String, Seq)> = redis::cmd("HGETALL")
            .arg(positions_key(account))
            .query_async(&mut self.redis.conn())
            .await
            .map_err(|e| self.redis.error(e))?;
        Ok(all
            .into_iter()
            .filter_map(|(room, seq)| Some((RoomName::parse(&room).ok()?, seq)))
            .collect())
    }
}

fn positions_key(account: i64) -> String {
    format!("tlschat:positions:{account}")
}

fn node_key(node: NodeId) -> String {
    format!("tlschat:online:node:{node}")
}

/// A stored session; one this version cannot read is skipped (and logged).
fn parse(json: &str) -> Option<SessionRecord> {
    match serde_json::from_str(json) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "skipping an unreadable online session");
            None
        }
    }
}
