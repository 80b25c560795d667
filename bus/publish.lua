-- Idempotent publish of one event (wire format v1, docs/wire-format.md).
-- KEYS[1] the aggregate stream, KEYS[2] its dedupe key for this event id (same hash tag).
-- ARGV[1] dedupe TTL in ms, ARGV[2] MINID for age retention ('' for none),
-- ARGV[3..] field, value, field, value, ... of the entry.
-- Returns {1, new entry id} or {0, entry id of the earlier publish of the same event id}.
local earlier = redis.call('GET', KEYS[2])
if earlier then
  -- Rewritten as it is (value and TTL kept) so that this call replicates something: a WAIT
  -- behind a retried publish then waits for the replicas to hold the earlier entry too.
  redis.call('SET', KEYS[2], earlier, 'KEEPTTL')
  return {0, earlier}
end
local entry
if ARGV[2] ~= '' then
  entry = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[2], '*', unpack(ARGV, 3))
else
  entry = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
end
redis.call('SET', KEYS[2], entry, 'PX', ARGV[1])
return {1, entry}
