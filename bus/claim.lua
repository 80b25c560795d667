-- Claim one idle entry for this consumer and return it with the delivery count the claim gave
-- it, atomically: a count read before or after (another call) can be another claim's.
-- KEYS[1] the stream. ARGV[1] group, ARGV[2] this consumer, ARGV[3] min idle (ms), ARGV[4] id.
-- Returns {fields (flat), delivery count}, or false when the entry was not claimed (not idle
-- enough: another consumer claimed it first; or deleted or trimmed while pending).
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
local entry = claimed[1]
if not entry or not entry[2] then
  return false
end
local row = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[4], ARGV[4], 1)[1]
return {entry[2], row[4]}
