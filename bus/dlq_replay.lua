-- Replay one dead letter (bus.admin.deadletters, docs/wire-format.md section 6), after the
-- client verified it (DeadLetters.verify). Uses cmp() of id_compare.lua, loaded before it.
-- KEYS[1] the dead-letter stream, KEYS[2] its stream (same hash tag: one Cluster slot).
-- ARGV[1] dead letter id, ARGV[2] 'group' | 'stream', ARGV[3] '1' = dry run,
-- ARGV[4] '1' = create the stream if it is gone (stream target), ARGV[5] group,
-- ARGV[6] consumer to park a group replay under, ARGV[7] its idle time (ms).
-- Returns {code, entry id or ''}. Checks, then writes nothing or everything.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return {'gone', ''} end
local raw = found[1][2]
local fields, original, event_id = {}, nil, nil
for i = 1, #raw, 2 do
  local name = raw[i]
  if string.sub(name, 1, 4) == 'dlq.' then
    if name == 'dlq.entry' then original = raw[i + 1] end
  else
    if name == 'id' then event_id = raw[i + 1] end
    fields[#fields + 1] = name
    fields[#fields + 1] = raw[i + 1]
  end
end
local dry = ARGV[3] == '1'
local exists = redis.call('EXISTS', KEYS[2]) == 1
local function done(code, entry)
  if not dry then
    redis.call('XDEL', KEYS[1], ARGV[1])
    if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
  end
  return {code, entry}
end
if #fields == 0 then return {'empty', ''} end
if ARGV[2] == 'stream' then
  if not exists and ARGV[4] ~= '1' then return {'no_stream', ''} end
  if dry then return {'would', ''} end
  return done('replayed', redis.call('XADD', KEYS[2], '*', unpack(fields)))
end
if not exists then return {'no_stream', ''} end
if not original or not string.match(original, '^%d+%-%d+$') then return {'no_original', ''} end
local last = nil
for _, info in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
  local name, position = nil, nil
  for i = 1, #info, 2 do
    if info[i] == 'name' then name = info[i + 1] end
    if info[i] == 'last-delivered-id' then position = info[i + 1] end
  end
  if name == ARGV[5] then last = position end
end
if not last then return {'no_group', ''} end
local entry = redis.call('XRANGE', KEYS[2], original, original)
if #entry == 0 then return {'trimmed', original} end
local same = nil
for i = 1, #entry[1][2], 2 do
  if entry[1][2][i] == 'id' then same = entry[1][2][i + 1] == event_id end
end
if same == false then return {'mismatch', original} end
if cmp(last, original) < 0 then
  if dry then return {'would_unread', original} end
  return done('unread', original)
end
if #redis.call('XPENDING', KEYS[2], ARGV[5], original, original, 1) > 0 then
  return {'pending', original}
end
if dry then return {'would', original} end
redis.call('XCLAIM', KEYS[2], ARGV[5], ARGV[6], 0, original,
  'IDLE', ARGV[7], 'RETRYCOUNT', 0, 'FORCE', 'JUSTID')
return done('replayed', original)
