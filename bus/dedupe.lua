-- The dedupe helper's marker of one event for one group (KEYS[1]).
-- ARGV[1] 'begin' | 'finish' | 'abandon', ARGV[2] this attempt's lease value, ARGV[3] TTL in ms.
-- begin: returns the current value if another attempt holds it or it says 'done'; else takes the
--        lease (also when this very attempt already holds it, e.g. after a lost reply). A 'done'
--        found is written again as it is (KEEPTTL): a WAIT behind this call then confirms the
--        marker is on the replicas before the caller acks without running the handler.
-- finish: marks 'done' for the TTL.  abandon: drops the lease if it is still ours.
local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'begin' then
  if current == 'done' then
    redis.call('SET', KEYS[1], 'done', 'KEEPTTL')
    return current
  end
  if current and current ~= ARGV[2] then return current end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return false
elseif ARGV[1] == 'finish' then
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[3])
  return 'done'
elseif current == ARGV[2] then
  redis.call('DEL', KEYS[1])
end
return false
