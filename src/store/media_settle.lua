-- Settles a media item, only while it is pending (another instance may have settled it already):
-- ARGV[1] 'ready' or 'failed' with field/value pairs after it, or 'forget'. A failed or forgotten
-- item's chunks (KEYS[1]:0, :1, ...) are deleted; the claim to fetch it (KEYS[1]:claim) is given
-- back either way.
-- KEYS[1]: the item's hash. Returns 1 when it settled the item, 0 otherwise.
local function drop_chunks()
  local n = 0
  while redis.call('DEL', KEYS[1] .. ':' .. n) == 1 do
    n = n + 1
  end
end
redis.call('DEL', KEYS[1] .. ':claim')
if ARGV[1] == 'forget' then
  drop_chunks()
  redis.call('DEL', KEYS[1])
  return 1
end
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], unpack(ARGV, 2))
if ARGV[1] == 'failed' then
  drop_chunks()
end
return 1
