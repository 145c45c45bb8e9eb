//! Failure counters shared by every node through Redis, so that spreading guesses over the
//! nodes of a cluster gains nothing: the same rules as [`super::LocalCounter`], each decision
//! one script (atomic on the server), times in milliseconds of the wall clock (shared by the
//! nodes). Keys:
//!
//! | key | type | holds | trimmed |
//! |---|---|---|---|
//! | `tlschat:fail:user:NAME` | sorted set | counted attempts at NAME (lower case): `ID\|SOURCE` by time | by window, at most `user_failure_ceiling`, expires after the window |
//! | `tlschat:fail:ip:SOURCE` | sorted set | the source's attempts: `ID\|c` (checked) or `ID\|t` (throttled) | by window, at most `ip_failures` + 16, expires after the window |
//! | `tlschat:fail:next` | string | the attempt id counter | never |

use std::net::IpAddr;
use std::time::Duration;

use super::{MAX_DELAY, MAX_DELAY_DOUBLINGS, Rules, Verdict, delay_after, source_key, user_key};
use crate::cluster::{Redis, RedisUnavailable};
use crate::config::Limits;

/// Decides and counts one attempt; returns `{throttled, doublings}`.
const ATTEMPT_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local user_window, ip_window = tonumber(ARGV[2]), tonumber(ARGV[3])
local user_limit, user_ceiling = tonumber(ARGV[4]), tonumber(ARGV[5])
local ip_limit, source_cap = tonumber(ARGV[6]), tonumber(ARGV[7])
local source = ARGV[8]
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ip_window)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - user_window)
local throttled = false
local excess, earlier = 0, 0
local attempts = redis.call('ZRANGE', KEYS[2], 0, -1)
if #attempts >= ip_limit then
  throttled = true
  excess = #attempts - ip_limit
end
for _, m in ipairs(attempts) do
  if string.sub(m, -2) == '|t' then earlier = earlier + 1 end
end
local fails = redis.call('ZRANGE', KEYS[1], 0, -1)
if #fails >= user_ceiling then
  throttled = true
elseif #fails >= user_limit then
  for _, m in ipairs(fails) do
    if string.match(m, '^%d+|(.*)$') == source then
      throttled = true
      break
    end
  end
end
local id = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], now, id .. (throttled and '|t' or '|c'))
local n = redis.call('ZCARD', KEYS[2])
if n > source_cap then redis.call('ZPOPMIN', KEYS[2], n - source_cap) end
redis.call('PEXPIRE', KEYS[2], ip_window)
if throttled then return {1, excess + earlier} end
redis.call('ZADD', KEYS[1], now, id .. '|' .. source)
n = redis.call('ZCARD', KEYS[1])
if n > user_ceiling then redis.call('ZPOPMIN', KEYS[1], n - user_ceiling) end
redis.call('PEXPIRE', KEYS[1], user_window)
return {0, 0}
";

/// Takes back the newest checked attempt of the source, at the name and at the source.
const FORGIVE_SCRIPT: &str = r"
local fails = redis.call('ZRANGE', KEYS[1], 0, -1)
for i = #fails, 1, -1 do
  if string.match(fails[i], '^%d+|(.*)$') == ARGV[1] then
    redis.call('ZREM', KEYS[1], fails[i])
    break
  end
end
local attempts = redis.call('ZRANGE', KEYS[2], 0, -1)
for i = #attempts, 1, -1 do
  if string.sub(attempts[i], -2) == '|c' then
    redis.call('ZREM', KEYS[2], attempts[i])
    break
  end
end
return 0
";

/// Failure counters in Redis.
pub struct RedisCounter {
    redis: Redis,
    attempt: redis::Script,
    forgive: redis::Script,
    rules: Rules,
}

impl RedisCounter {
    /// Counters on `redis` with the thresholds and windows of `limits`.
    pub fn new(redis: Redis, limits: &Limits) -> Self {
        RedisCounter {
            redis,
            attempt: redis::Script::new(ATTEMPT_SCRIPT),
            forgive: redis::Script::new(FORGIVE_SCRIPT),
            rules: Rules::of(limits),
        }
    }

    /// Decides on an attempt for `name` from `ip` and counts it, as the local counter does.
    pub async fn attempt(&self, name: &str, ip: IpAddr) -> Result<Verdict, RedisUnavailable> {
        self.redis.within(self.count(name, ip)).await
    }

    async fn count(&self, name: &str, ip: IpAddr) -> Result<Verdict, RedisUnavailable> {
        let source = source_key(ip).to_string();
        let mut conn = self.redis.conn();
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (throttled, doublings): (u8, usize) = self
            .attempt
            .key(user_counter_key(name))
            .key(source_counter_key(&source))
            .key("tlschat:fail:next")
            .arg(crate::event::now_ms())
            .arg(millis(self.rules.user_window))
            .arg(millis(self.rules.ip_window))
            .arg(self.rules.user_limit)
            .arg(self.rules.user_ceiling)
            .arg(self.rules.ip_limit)
            .arg(self.rules.ip_limit + MAX_DELAY_DOUBLINGS)
            .arg(&source)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.redis.error(e))?;
        if throttled == 1 {
            return Ok(Verdict::Throttled(
                delay_after(self.rules.base_delay, doublings).min(MAX_DELAY),
            ));
        }
        Ok(Verdict::Check)
    }

    /// Takes back the count of a checked attempt that succeeded or was never checked; a
    /// failure to reach Redis only leaves the attempt counted (logged).
    pub async fn forgive(&self, name: &str, ip: IpAddr) {
        let source = source_key(ip).to_string();
        let mut conn = self.redis.conn();
        let done: Result<(), _> = self
            .forgive
            .key(user_counter_key(name))
            .key(source_counter_key(&source))
            .arg(&source)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "could not take back a login attempt's count");
        }
    }
}

fn user_counter_key(name: &str) -> String {
    format!("tlschat:fail:user:{}", user_key(name))
}

fn source_counter_key(source: &str) -> String {
    format!("tlschat:fail:ip:{source}")
}
