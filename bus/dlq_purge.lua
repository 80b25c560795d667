-- Purge dead letters (simpul dlq purge; the admin only). KEYS[1] a dead-letter stream.
-- ARGV[1] 'minid' then the MINID, or 'ids' then entry ids. Deletes them, and the key once
-- empty; returns how many went.
local gone
if ARGV[1] == 'minid' then
  gone = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
else
  gone = redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
end
if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return gone
