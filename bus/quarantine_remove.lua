-- Remove one quarantined record: KEYS[1] the stream, KEYS[2] its index.
-- ARGV[1] entry id, ARGV[2] index field.
redis.call('HDEL', KEYS[2], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[1])
