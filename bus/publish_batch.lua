-- Idempotent publish of several events to one stream in one call (same semantics as
-- publish.lua, event by event; wire format v1, docs/wire-format.md).
-- KEYS[1] the stream, KEYS[2..] the dedupe key of each event, in order (same hash tag).
-- ARGV[1] dedupe TTL in ms, ARGV[2] MINID for age retention ('' for none), then per event:
-- the number n of field/value strings, then those n strings.
-- Returns {added, entry id, added, entry id, ...}: added is 1 for a new entry, 0 for an id
-- published before (entry id is then the earlier entry's).
local ttl, minid, out, a = ARGV[1], ARGV[2], {}, 3
for i = 2, #KEYS do
  local n = tonumber(ARGV[a])
  local earlier = redis.call('GET', KEYS[i])
  if earlier then
    redis.call('SET', KEYS[i], earlier, 'KEEPTTL') -- replicates: see publish.lua
    out[#out + 1] = 0
    out[#out + 1] = earlier
  else
    local entry
    if minid ~= '' then
      entry = redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', unpack(ARGV, a + 1, a + n))
    else
      entry = redis.call('XADD', KEYS[1], '*', unpack(ARGV, a + 1, a + n))
    end
    redis.call('SET', KEYS[i], entry, 'PX', ttl)
    out[#out + 1] = 1
    out[#out + 1] = entry
  end
  a = a + n + 1
end
return out
