-- Hands out the next send slot of a rate shared by every instance: slots `interval` ms apart,
-- none in the past (GCRA without bursts). KEYS[1]: the rate's key; ARGV[1]: the interval in ms.
-- Returns how many ms the caller waits for its slot.
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local interval = tonumber(ARGV[1])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], slot + interval, 'PX', slot + interval - now + 1000)
return slot - now
