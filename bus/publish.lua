-- Idempotent publish of one event (wire format v1, docs/wire-format.md).
-- KEYS[1] the aggregate stream, KEYS[2] its dedupe key for this event id (same hash tag).
-- ARGV[1] dedupe TTL in ms, ARGV[2] MINID for age retention ('' for none),
-- ARGV[3..] field, value, field, value, ... of the entry.
-- Returns {1, new entry id} or {0, entry id of the earlier publish of the same event id}.
-- Entries over 1 MiB (field names and values) are refused: a producer cannot fill Redis with
-- one entry (maxmemory is a shared limit). The cap is the library's, not the caller's.
local size = 0
for i = 3, #ARGV do size = size + #ARGV[i] end
if size > 1048576 then
  return redis.error_reply('SIMPUL_TOO_LARGE the entry has ' .. size ..
    ' bytes; the bus admits at most 1048576 (docs/wire-format.md)')
end
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
