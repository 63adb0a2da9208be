-- Count a shard once even if BullMQ delivers its write job twice (stall recovery): the shard id
-- enters the run's done set atomically with the counter increments.
-- KEYS: run hash, done set, failures hash.
-- ARGV: shardId, now, TTL of the done set once the run has all its shards (s), then counter name/value pairs.
-- Returns 0: already counted; 1: counted; 2: the run's last shard, none failed (write the summary).
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
for i = 4, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSETNX', KEYS[1], 'firstDoneAt', ARGV[2])
redis.call('HSET', KEYS[1], 'lastDoneAt', ARGV[2])
local total = tonumber(redis.call('HGET', KEYS[1], 'shardsTotal') or '0')
local failed = redis.call('HLEN', KEYS[3])
if redis.call('SCARD', KEYS[2]) + failed >= total and redis.call('HSETNX', KEYS[1], 'allShardsAt', ARGV[2]) == 1 then
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
  -- A clean run is complete once its _summary.json is written (markCompleted); a run with
  -- failed shards writes none and is complete now.
  if failed == 0 then return 2 end
  redis.call('HSETNX', KEYS[1], 'completedAt', ARGV[2])
end
return 1
