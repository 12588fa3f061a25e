-- Replaces a journal entry that failed for good by its notice, atomically: the notice is appended
-- to this instance's journal, then the failed entry is removed (and its journal, once empty).
-- KEYS[1]: this instance's journal; KEYS[2]: the failed entry's journal.
-- ARGV[1]: the failed entry's id; ARGV[2..5]: the notice's conversation, reference, payload, lane.
-- Returns the notice's entry id.
local id = redis.call('XADD', KEYS[1], '*', 'c', ARGV[2], 'r', ARGV[3], 'p', ARGV[4], 'l', ARGV[5], 'a', '')
redis.call('XDEL', KEYS[2], ARGV[1])
if redis.call('XLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2])
end
return id
