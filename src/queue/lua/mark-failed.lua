-- A shard failed for good, unless a concurrent delivery of it was counted done: checked and
-- recorded in one step, so a shard is never both. A run with a failed shard writes no summary and
-- is complete once every shard is done or failed.
-- KEYS: run hash, done set, failures hash.
-- ARGV: shardId, error, now, TTL of the done set once the run has all its shards (s).
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local total = tonumber(redis.call('HGET', KEYS[1], 'shardsTotal') or '0')
if redis.call('SCARD', KEYS[2]) + redis.call('HLEN', KEYS[3]) >= total and redis.call('HSETNX', KEYS[1], 'completedAt', ARGV[3]) == 1 then
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
end
return 1
