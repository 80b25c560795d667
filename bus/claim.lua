-- Claim one idle entry for this consumer and return it with the delivery count the claim gave
-- it, atomically: a count read before or after (another call) can be another claim's.
-- KEYS[1] the stream. ARGV[1] group, ARGV[2] this consumer, ARGV[3] min idle (ms), ARGV[4] id.
-- Returns {fields (flat), delivery count}; false when the entry is not pending idle enough
-- (another consumer claimed or acked it first); 0 when it was pending and idle but its entry
-- is gone (deleted or trimmed while pending): Redis 7 drops it from the PEL as XCLAIM meets it
-- (6.2 claims it without fields: acked here, so both versions leave nothing pending).
-- Services may not XRANGE: the reply alone must tell "gone" from "claimed by another".
local idle = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], ARGV[4], ARGV[4], 1)
if #idle == 0 then
  return false
end
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
local entry = claimed[1]
if not entry or not entry[2] then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[4])
  return 0
end
local row = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[4], ARGV[4], 1)[1]
return {entry[2], row[4]}
