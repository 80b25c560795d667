-- The router's admission in one hop (decision 0014): events admitted onto one department
-- stream under entry ids the router chose, and, where the fan-out has forwarded everything
-- before them, their inbox entries written in the same call. Uses cmp() of id_compare.lua.
-- KEYS[1] the department stream; KEYS[2 .. 1+E] the dedupe key of each event, in order; then
-- the I inboxes the call may write, then their I high-water marks <inbox>:routed, same order.
-- ARGV[1] dedupe TTL in ms, ARGV[2] the router's group on the stream, ARGV[3] E, ARGV[4] I,
-- ARGV[5] how far (ms) a chosen id may lie from Redis TIME; then per event: its chosen
-- entry id, the number n of field/value strings, those n strings, the number r of its inbox
-- entries, and per inbox entry: the inbox's index (1..I), the number m of strings, those.
-- Returns {status, id, ...} per event, in order: 1 admitted under id and forwarded; 2 admitted
-- under id, left to the fan-out (it has not forwarded everything before: its group is behind,
-- has entries pending or does not exist yet); 0 published before (id: the earlier entry's).
-- A chosen id at or below the stream's last id, or more than ARGV[5] ms from TIME (unless it
-- is the one right after a last id ahead of TIME), ends the call there with {-1,
-- last-generated-id, TIME in ms}: the events before it are written, the rest are not, and the
-- router chooses again. So a department-stream id is always Redis's TIME at admission to
-- within ARGV[5] ms, never anything a producer chose.
local stream, group = KEYS[1], ARGV[2]
local events, inboxes = tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl, drift = ARGV[1], tonumber(ARGV[5])

-- Whether the fan-out has forwarded everything on the stream: its group is at the last entry
-- with nothing pending. Asked once: within the call nothing else writes the stream.
local function caught_up()
  local found = redis.pcall('XINFO', 'GROUPS', stream)
  if type(found) ~= 'table' or found.err then return false end -- no stream yet
  for _, info in ipairs(found) do
    local g = {}
    for i = 1, #info, 2 do g[info[i]] = info[i + 1] end
    if g['name'] == group then
      if tonumber(g['pending']) ~= 0 then return false end
      local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
      if #last > 0 and cmp(g['last-delivered-id'], last[1][1]) < 0 then return false end
      return true, g['entries-read']
    end
  end
  return false
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function last_generated()
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return info[i + 1] end
  end
  return '0-0'
end

-- The smallest id after a stream's last one: a stream whose last id lies ahead of TIME (an
-- operator's write) is written on just after it, as XADD * would, not refused for ever.
local function successor(last)
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  if not seq or tonumber(seq) >= 2 ^ 53 then return nil end
  return ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end

-- Where each event lies in ARGV, read once. Every entry is checked before any is added: over
-- 1 MiB refuses the whole call (publish.lua).
local layout, a = {}, 6
for e = 1, events do
  local n, size = tonumber(ARGV[a + 1]), 0
  for j = a + 2, a + 1 + n do size = size + #ARGV[j] end
  if size > 1048576 then
    return redis.error_reply('SIMPUL_TOO_LARGE entry ' .. e .. ' of the call has ' .. size ..
      ' bytes; the bus admits at most 1048576 (docs/wire-format.md)')
  end
  local r = tonumber(ARGV[a + 2 + n])
  layout[e] = {chosen = ARGV[a], fields = a + 2, n = n, writes = a + 3 + n, r = r}
  a = a + 3 + n
  for _ = 1, r do a = a + 2 + tonumber(ARGV[a + 1]) end
end

local forwarding, entries_read = caught_up()
local clock = now_ms()
local out, forwarded, count, marks = {}, nil, 0, {}
for e, event in ipairs(layout) do
  local earlier = redis.call('GET', KEYS[1 + e])
  if earlier then
    redis.call('SET', KEYS[1 + e], earlier, 'KEEPTTL') -- replicates: see publish.lua
    out[#out + 1] = 0
    out[#out + 1] = earlier
  else
    local chosen = event.chosen
    local ms = tonumber(string.match(chosen, '^(%d+)-%d+$'))
    local fields = event.fields
    local added = ms and (math.abs(ms - clock) <= drift or chosen == successor(last_generated()))
      and redis.pcall('XADD', stream, chosen, unpack(ARGV, fields, fields + event.n - 1))
    if not added or type(added) == 'table' then
      out[#out + 1] = -1
      out[#out + 1] = last_generated()
      out[#out + 1] = clock
      break
    end
    redis.call('SET', KEYS[1 + e], added, 'PX', ttl)
    if forwarding then
      local w = event.writes
      for _ = 1, event.r do
        local index, m = tonumber(ARGV[w]), tonumber(ARGV[w + 1])
        redis.call('XADD', KEYS[1 + events + index], '*', unpack(ARGV, w + 2, w + 1 + m))
        marks[index] = added
        w = w + 2 + m
      end
      forwarded, count = added, count + 1
      out[#out + 1] = 1
    else
      out[#out + 1] = 2
    end
    out[#out + 1] = added
  end
end
for index, mark in pairs(marks) do redis.call('SET', KEYS[1 + events + inboxes + index], mark) end
if forwarded then
  -- The fan-out's group moves past what was forwarded here: it never reads it.
  if entries_read then
    redis.call('XGROUP', 'SETID', stream, group, forwarded, 'ENTRIESREAD',
      tonumber(entries_read) + count)
  else
    redis.call('XGROUP', 'SETID', stream, group, forwarded)
  end
end
return out
