-- Removes a settled entry from its journal, and the journal itself once empty (an adopted journal
-- is then gone; an instance's own journal comes back with its next entry).
-- KEYS[1]: the journal; ARGV[1]: the entry id.
redis.call('XDEL', KEYS[1], ARGV[1])
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
end
return 1
