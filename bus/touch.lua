-- Keep a long batch's entries with the consumer that holds them (so a sweep does not take them).
-- KEYS[1] the stream. ARGV[1] group, ARGV[2] this consumer, ARGV[3..] entry ids.
-- Resets the idle time of each entry this consumer still owns (XCLAIM JUSTID: the delivery count
-- stays) and returns those ids; entries another consumer took meanwhile are left to it.
local owned = {}
for i = 3, #ARGV do
  local row = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
  if row and row[2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    owned[#owned + 1] = ARGV[i]
  end
end
return owned
