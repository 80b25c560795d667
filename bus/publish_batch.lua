-- Idempotent publish of several events to one stream in one call (same semantics as
-- publish.lua, event by event; wire format v1, docs/wire-format.md).
-- KEYS[1] the stream, KEYS[2..] the dedupe key of each event, in order (same hash tag).
-- ARGV[1] dedupe TTL in ms, ARGV[2] MINID for age retention ('' for none), ARGV[3] the number
-- s of field-name lists ("shapes"), then each shape: its length m and its m field names; then
-- per event: the number (1..s) of its shape and its m field values, in the shape's order.
-- Field names go once per call, not once per event: the client packs half the strings.
-- Returns {added, entry id, added, entry id, ...}: added is 1 for a new entry, 0 for an id
-- published before (entry id is then the earlier entry's).
local ttl, minid, out, shapes, a = ARGV[1], ARGV[2], {}, {}, 4
for s = 1, tonumber(ARGV[3]) do
  local m = tonumber(ARGV[a])
  shapes[s] = {unpack(ARGV, a + 1, a + m)}
  a = a + m + 1
end
for i = 2, #KEYS do
  local names = shapes[tonumber(ARGV[a])]
  local m = #names
  local earlier = redis.call('GET', KEYS[i])
  if earlier then
    redis.call('SET', KEYS[i], earlier, 'KEEPTTL') -- replicates: see publish.lua
    out[#out + 1] = 0
    out[#out + 1] = earlier
  else
    local fields = {}
    for j = 1, m do
      fields[2 * j - 1] = names[j]
      fields[2 * j] = ARGV[a + j]
    end
    local entry
    if minid ~= '' then
      entry = redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', unpack(fields))
    else
      entry = redis.call('XADD', KEYS[1], '*', unpack(fields))
    end
    redis.call('SET', KEYS[i], entry, 'PX', ttl)
    out[#out + 1] = 1
    out[#out + 1] = entry
  end
  a = a + m + 1
end
return out
