-- Trim a stream by age (simpul trim; the admin only); after id_compare.lua (cmp).
-- KEYS[1] a stream. ARGV[1] MINID, ARGV[2] '1' = trim even if a group loses entries.
-- Refuses ({0, group, why}) when a group has not read, or still holds pending, an entry below
-- MINID; else trims exactly (no '~') and returns {1, how many went}.
if ARGV[2] ~= '1' then
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local name, last = nil, nil
    for i = 1, #info, 2 do
      if info[i] == 'name' then name = info[i + 1] end
      if info[i] == 'last-delivered-id' then last = info[i + 1] end
    end
    local unread = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
    if #unread > 0 and cmp(unread[1][1], ARGV[1]) < 0 then return {0, name, 'unread'} end
    local held = redis.call('XPENDING', KEYS[1], name, '-', '(' .. ARGV[1], 1)
    if #held > 0 then return {0, name, 'pending'} end
  end
end
return {1, redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])}
