-- The audit archive's head (services.audit): moves forward only, so that replicas may update
-- it after their commits in any order. KEYS[1] the head (a hash). ARGV[1] seq, ARGV[2] hash.
local current = redis.call('HGET', KEYS[1], 'seq')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'hash', ARGV[2])
return 1
