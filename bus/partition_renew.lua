-- Renew a partition lease (KEYS[1]) if this consumer (ARGV[1]) holds it, for ARGV[2] ms.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
