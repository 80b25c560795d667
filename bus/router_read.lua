-- The router's read of one source (decision 0011), fenced by its lease: XREADGROUP only while
-- the caller holds the source's lease, in the same atomic step. A replica that lost its lease
-- (paused past it) reads nothing, so every entry is read by the holder of the time, and a new
-- holder that first reads what is pending finds everything its predecessors read and left.
-- The fan-out's high-water marks (forward_batch.lua) rely on it.
-- KEYS[1] the source (an intake or a department stream), KEYS[2] its lease
-- <source>:lease:router (same hash tag, one Cluster slot).
-- ARGV[1] the caller's replica name, ARGV[2] group, ARGV[3] consumer, ARGV[4] count,
-- ARGV[5] '>' (new entries) or '0' (what is pending with the consumer).
-- ARGV[5] may also be an entry id: what is pending after it.
-- Returns {entries} as XREADGROUP returns them for the one stream ({{id, {f, v, ...}}, ...}),
-- or, when there is nothing new, {{}, last id}: the stream's last entry id, from which the
-- caller waits (XREAD BLOCK) for more. An error SIMPUL_NOT_HOLDER if the lease is another's.
-- A pending entry deleted since it was read (a producer may trim its own intake; retention
-- trims a department stream) comes back without fields: it is acked here, nothing to route,
-- and the read goes on after it, so a batch of them does not pass for the end of what is
-- pending while entries behind them still are.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('SIMPUL_NOT_HOLDER this replica does not hold the lease on ' .. KEYS[1])
end
local cursor = ARGV[5]
while true do
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
    'STREAMS', KEYS[1], cursor)
  local entries = (reply and reply[1] and reply[1][2]) or {}
  if #entries == 0 then break end
  local live, gone = {}, {}
  for _, entry in ipairs(entries) do
    if entry[2] then live[#live + 1] = entry else gone[#gone + 1] = entry[1] end
  end
  if #gone > 0 then redis.call('XACK', KEYS[1], ARGV[2], unpack(gone)) end
  if #live > 0 then return {live} end
  cursor = entries[#entries][1] -- only pending reads meet deleted entries: never '>'
end
if ARGV[5] ~= '>' then return {{}} end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return {{}, '0-0'} end
return {{}, last[1][1]}
