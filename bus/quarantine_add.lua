-- Quarantine one record (bus.adapter.quarantine), once: KEYS[1] the adapter's quarantine
-- stream, KEYS[2] its index. ARGV[1] the index field, ARGV[2..] field, value, ... of the entry.
-- Returns {1, new entry id} or {0, the entry id quarantined before}.
local known = redis.call('HGET', KEYS[2], ARGV[1])
if known then return {0, known} end
local entry = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('HSET', KEYS[2], ARGV[1], entry)
return {1, entry}
