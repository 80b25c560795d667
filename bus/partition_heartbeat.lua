-- A consumer's heartbeat in its group's membership (bus.partitions): KEYS[1] the members
-- (a sorted set by last beat). ARGV[1] this consumer, ARGV[2] the lease time in ms.
-- Returns how many consumers beat within the lease time.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return redis.call('ZCARD', KEYS[1])
