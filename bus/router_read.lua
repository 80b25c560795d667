-- The router's read of one source (decision 0011), fenced by its lease: XREADGROUP only while
-- the caller holds the source's lease, in the same atomic step. A replica that lost its lease
-- (paused past it) reads nothing, so every entry is read by the holder of the time, and a new
-- holder that first reads what is pending finds everything its predecessors read and left.
-- The fan-out's high-water marks (forward_batch.lua) rely on it.
-- KEYS[1] the source (an intake or a department stream), KEYS[2] its lease
-- <source>:lease:router (same hash tag, one Cluster slot).
-- ARGV[1] the caller's replica name, ARGV[2] group, ARGV[3] consumer, ARGV[4] count,
-- ARGV[5] '>' (new entries) or '0' (what is pending with the consumer).
-- Returns {entries} as XREADGROUP returns them for the one stream ({{id, {f, v, ...}}, ...}),
-- or, when there is nothing new, {{}, last id}: the stream's last entry id, from which the
-- caller waits (XREAD BLOCK) for more. An error SIMPUL_NOT_HOLDER if the lease is another's.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('SIMPUL_NOT_HOLDER this replica does not hold the lease on ' .. KEYS[1])
end
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
  'STREAMS', KEYS[1], ARGV[5])
if reply and reply[1] and #reply[1][2] > 0 then return {reply[1][2]} end
if ARGV[5] ~= '>' then return {{}} end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return {{}, '0-0'} end
return {{}, last[1][1]}
