//! The nodes of a cluster in Redis: each running node holds its name under a lease it renews
//! (every [`HEARTBEAT`], lapsing after [`LEASE`]), so that no two live nodes share a name, and
//! every node can find the nodes that died (lease lapsed) whose members are still listed, to
//! announce them as left and sweep them. A node keeps its id across restarts under one name
//! (ids are what [`crate::event::ConnId`] carries). Keys:
//!
//! | key | type | holds | written by | expires |
//! |---|---|---|---|---|
//! | `tlschat:node:name:NAME` | string | `ID TOKEN` of the live node named NAME | claim, renew, release | after the lease |
//! | `tlschat:nodes` | hash | ID → NAME of every node not yet swept | claim; release and sweep delete | never |
//! | `tlschat:node:ids` | hash | NAME → ID, kept for good | claim | never |
//! | `tlschat:node:next` | string | the last id given | claim | never |

use std::time::Duration;

use crate::cluster::{Redis, RedisUnavailable};
use crate::event::NodeId;

/// How often a node renews its lease.
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// How long a lease lasts without renewal: two heartbeats missed and a margin.
pub const LEASE: Duration = Duration::from_secs(7);

const NODES: &str = "tlschat:nodes";
const IDS: &str = "tlschat:node:ids";
const NEXT: &str = "tlschat:node:next";

/// Takes a name if no live node holds it; returns `{id, unswept}` (unswept: the name's
/// previous incarnation died and its members were not swept), `{-1}` when the name is in
/// use, `{-2}` when no id is left.
const CLAIM_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, 0} end
local id = redis.call('HGET', KEYS[3], ARGV[1])
local unswept = 0
if id then
  if redis.call('HEXISTS', KEYS[2], id) == 1 then unswept = 1 end
else
  id = redis.call('INCR', KEYS[4])
  if id > 65535 then return {-2, 0} end
  redis.call('HSET', KEYS[3], ARGV[1], id)
end
redis.call('HSET', KEYS[2], id, ARGV[1])
redis.call('SET', KEYS[1], id .. ' ' .. ARGV[2], 'PX', ARGV[3])
return {tonumber(id), unswept}
";

/// Renews the lease if this node still holds it (1), else 0: a lapsed lease means the node
/// counts as dead. Only when the registry itself is gone (Redis lost its data) is the lease
/// taken again, under the same id.
const RENEW_SCRIPT: &str = r"
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if held then return 0 end
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 1 then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then return 0 end
redis.call('HSET', KEYS[3], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
if tonumber(redis.call('GET', KEYS[4]) or '0') < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[4], ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Releases the name and the node's entry if this node still holds it.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
return 0
";

/// Forgets a dead node's entry, unless its name is held again (then it is live, not dead).
const SWEPT_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
";

/// Why a node could not take its name.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// A live node holds the name.
    #[error("node name {0} is in use")]
    InUse(String),
    /// Every node id (1 – 65,535) is taken.
    #[error("no node id is left for {0}")]
    NoIdLeft(String),
    /// Redis failed or is unreachable.
    #[error(transparent)]
    Redis(#[from] RedisUnavailable),
}

/// This node, as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its id (the same for every incarnation of the name).
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// The previous incarnation of the name died and its members were not swept: this node
    /// announces them as left before it serves.
    pub unswept: bool,
    /// What proves this incarnation holds the lease.
    token: String,
}

/// A dead node whose members must be announced as left, then [`Nodes::swept`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadNode {
    /// Its id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
}

/// The node registry on one Redis; cheap to clone.
#[derive(Clone)]
pub struct Nodes {
    redis: Redis,
}

impl Nodes {
    /// The registry on `redis`.
    pub fn new(redis: Redis) -> Self {
        Nodes { redis }
    }

    fn error(&self, source: redis::RedisError) -> RedisUnavailable {
        self.redis.error(source)
    }

    /// Takes `name` for this process for `lease` (renew it every [`HEARTBEAT`]); refused
    /// while a live node holds it.
    pub async fn claim(&self, name: &str, lease: Duration) -> Result<Node, ClaimError> {
        let token = format!("{:016x}", rand_token());
        let mut conn = self.redis.conn();
        let (id, unswept): (i64, u8) = redis::Script::new(CLAIM_SCRIPT)
            .key(name_key(name))
            .key(NODES)
            .key(IDS)
            .key(NEXT)
            .arg(name)
            .arg(&token)
            .arg(millis(lease))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        match id {
            -1 => Err(ClaimError::InUse(name.to_owned())),
            -2 => Err(ClaimError::NoIdLeft(name.to_owned())),
            id => Ok(Node {
                id: NodeId::try_from(id).map_err(|_| ClaimError::NoIdLeft(name.to_owned()))?,
                name: name.to_owned(),
                unswept: unswept == 1,
                token,
            }),
        }
    }

    /// Renews `node`'s lease; `false` when it lapsed and another process took the name
    /// (this node must stop serving as it).
    pub async fn renew(&self, node: &Node, lease: Duration) -> Result<bool, RedisUnavailable> {
        let mut conn = self.redis.conn();
        let renewed: u8 = redis::Script::new(RENEW_SCRIPT)
            .key(name_key(&node.name))
            .key(NODES)
            .key(IDS)
            .key(NEXT)
            .arg(format!("{} {}", node.id, node.token))
            .arg(millis(lease))
            .arg(node.id)
            .arg(&node.name)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(renewed == 1)
    }

    /// Gives the name up at a clean shutdown (its members were announced as left by the node
    /// itself): it is free at once.
    pub async fn release(&self, node: &Node) -> Result<(), RedisUnavailable> {
        let mut conn = self.redis.conn();
        let _: u8 = redis::Script::new(RELEASE_SCRIPT)
            .key(name_key(&node.name))
            .key(NODES)
            .arg(format!("{} {}", node.id, node.token))
            .arg(node.id)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Every registered node's name, by id (for listings).
    pub async fn names(
        &self,
    ) -> Result<std::collections::HashMap<NodeId, String>, RedisUnavailable> {
        redis::cmd("HGETALL")
            .arg(NODES)
            .query_async(&mut self.redis.conn())
            .await
            .map_err(|e| self.error(e))
    }

    /// The nodes whose lease lapsed and that are not swept yet.
    pub async fn dead(&self) -> Result<Vec<DeadNode>, RedisUnavailable> {
        let mut conn = self.redis.conn();
        let known: Vec<(NodeId, String)> = redis::cmd("HGETALL")
            .arg(NODES)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        let mut dead = Vec::new();
        for (id, name) in known {
            let live: bool = redis::cmd("EXISTS")
                .arg(name_key(&name))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error(e))?;
            if !live {
                dead.push(DeadNode { id, name });
            }
        }
        dead.sort_by_key(|d| d.id);
        Ok(dead)
    }

    /// Forgets a dead node once its members were announced as left; `false` when it is not
    /// dead any more (its name was claimed again meanwhile) or was swept already.
    pub async fn swept(&self, dead: &DeadNode) -> Result<bool, RedisUnavailable> {
        let mut conn = self.redis.conn();
        let done: u8 = redis::Script::new(SWEPT_SCRIPT)
            .key(name_key(&dead.name))
            .key(NODES)
            .arg(dead.id)
            .arg(&dead.name)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done == 1)
    }
}

fn name_key(name: &str) -> String {
    format!("tlschat:node:name:{name}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A token that tells this incarnation's lease from a later one's (not a secret).
fn rand_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
