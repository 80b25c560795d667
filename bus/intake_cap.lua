-- The router's cap on the memory one producer holds in Redis (docs/security.md, "Memory").
-- Redis runs a function with its caller's rights and a producer may XADD to its intake
-- directly, so no publish function can bound what it writes there; the router, which reads
-- every intake, bounds what stays: maxmemory with noeviction is shared, and one intake grown to
-- it would refuse every other department's writes, and the router's own.
-- KEYS[1] an intake, KEYS[2] its dead letters <intake>:dlq (same hash tag, one Cluster slot).
-- ARGV[1] the intake's cap in bytes, ARGV[2] the dead letters' cap in bytes, ARGV[3] the time
-- for dlq.time, ARGV[4] the router's group.
-- A key over its cap (MEMORY USAGE, which Redis estimates from a few stream nodes) loses its
-- oldest entries down to half the cap: the dead letters their oldest refusals; the intake its
-- oldest entries, named by one dead letter `intake_overflow` (how many, from which id), since
-- those the router had not read yet are lost. Registered with allow-oom: it is what frees memory
-- when Redis already refuses every other write.
-- Returns {entries removed from the intake, entries removed from the dead letters}.
local function usage(key)
  return tonumber(redis.call('MEMORY', 'USAGE', key) or 0)
end

local function info(key)
  local reply, out = redis.call('XINFO', 'STREAM', key), {}
  for i = 1, #reply, 2 do out[reply[i]] = reply[i + 1] end
  return out
end

-- XTRIM MAXLEN to what fits in half of cap, by the key's average entry size.
local function shrink(key, used, cap)
  local length = redis.call('XLEN', key)
  local keep = math.floor(length * (cap / 2) / used)
  return redis.call('XTRIM', key, 'MAXLEN', keep)
end

local intake_cap, refusal_cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local removed, refusals = 0, 0
local used = usage(KEYS[1])
if used > intake_cap then
  local before = info(KEYS[1])
  local first = before['first-entry'] and before['first-entry'][1] or '0-0'
  removed = shrink(KEYS[1], used, intake_cap)
  if removed > 0 then
    local after = info(KEYS[1])
    local kept = after['first-entry'] and after['first-entry'][1] or before['last-generated-id']
    local read = '0-0'
    for _, reply in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
      local group = {}
      for i = 1, #reply, 2 do group[reply[i]] = reply[i + 1] end
      if group['name'] == ARGV[4] then read = group['last-delivered-id'] end
    end
    redis.call('XADD', KEYS[2], '*',
      'dlq.reason', 'intake_overflow',
      'dlq.error', 'the intake held about ' .. used .. ' bytes, more than the ' .. intake_cap ..
        ' bytes the router lets an intake hold (SIMPUL_ROUTER_MAX_INTAKE_BYTES): its ' .. removed ..
        ' oldest entries, from ' .. first .. ' up to ' .. kept .. ' (not included), were removed;' ..
        ' those after ' .. read .. ' had not been read and were not routed: publish them again',
      'dlq.stream', KEYS[1],
      'dlq.entry', first,
      'dlq.group', ARGV[4],
      'dlq.attempts', '1',
      'dlq.time', ARGV[3])
  end
end
local held = usage(KEYS[2])
if held > refusal_cap then
  refusals = shrink(KEYS[2], held, refusal_cap)
end
return {removed, refusals}
