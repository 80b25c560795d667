-- The router's fan-out write (decision 0011): department-stream entries forwarded to one
-- inbox, in their order, each written once even when the router routes a batch again after a
-- crash. Uses cmp() of id_compare.lua, loaded before it.
-- KEYS[1] the inbox, KEYS[2] its high-water mark <inbox>:routed (same hash tag, one Cluster
-- slot): the department-stream entry id of the last entry forwarded to the inbox.
-- ARGV, per entry, in department-stream order: its department-stream entry id, the number n of
-- field/value strings, then those n strings.
-- Returns {added, id, added, id, ...}: 1 and the new inbox entry id, or 0 and the mark for an
-- entry at or below it (forwarded before). One reader per department stream (the router's
-- lease) writes in stream order, so an entry at or below the mark is one already forwarded.
local mark = redis.call('GET', KEYS[2])
local out, a, last = {}, 1, nil
local count = #ARGV
while a <= count do
  local origin, n = ARGV[a], tonumber(ARGV[a + 1])
  if mark and cmp(origin, mark) <= 0 then
    out[#out + 1] = 0
    out[#out + 1] = mark
  else
    out[#out + 1] = 1
    out[#out + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, a + 2, a + 1 + n))
    mark, last = origin, origin
  end
  a = a + n + 2
end
if last then redis.call('SET', KEYS[2], last) end
return out
