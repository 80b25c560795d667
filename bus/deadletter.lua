-- Move one pending entry to its group's dead letters: ack it and add the dead letter, atomically.
-- KEYS[1] the stream, KEYS[2] the group's dead-letter stream (same hash tag).
-- ARGV[1] group, ARGV[2] entry id, ARGV[3..] field, value, ... of the dead letter.
-- Returns the dead letter's entry id, or false when the entry was no longer pending (another
-- consumer acked or dead-lettered it first), so an entry is never dead-lettered twice.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return false
end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
