-- Accepts a batch atomically: per candidate, check and mark its dedup key, keep its status rank
-- from going backwards, append the new ones to the journal, and remember the conversation of
-- outbound ones. Optionally settles (removes) one journal entry in the same step: the entry a
-- notice replaces.
-- KEYS[1]: the journal; KEYS[2]: the journal of the entry to settle (any key when none).
-- ARGV[1]: the dedup TTL in seconds; ARGV[2]: the id of the entry to settle, '' for none;
-- then nine values per candidate: dedup key, rank key ('' when unranked), rank, conversation,
-- reference, payload, lane, after, conversation memo key ('' when none).
-- Returns one string per candidate: the journal entry id, '' for a duplicate, '-' for superseded.
local ttl = ARGV[1]
local verdicts = {}
for i = 3, #ARGV, 9 do
  local verdict = ''
  if redis.call('SET', ARGV[i], '1', 'NX', 'EX', ttl) then
    verdict = '-'
    local rank_key = ARGV[i + 1]
    local fresh = true
    if rank_key ~= '' then
      local rank = tonumber(ARGV[i + 2])
      local seen = tonumber(redis.call('GET', rank_key) or '0')
      if rank < seen then
        fresh = false
      elseif rank > seen then
        redis.call('SET', rank_key, rank, 'EX', ttl)
      end
    end
    if fresh then
      verdict = redis.call('XADD', KEYS[1], '*', 'c', ARGV[i + 3], 'r', ARGV[i + 4], 'p', ARGV[i + 5],
        'l', ARGV[i + 6], 'a', ARGV[i + 7])
      if ARGV[i + 8] ~= '' then
        redis.call('SET', ARGV[i + 8], ARGV[i + 3], 'EX', ttl)
      end
    end
  end
  verdicts[#verdicts + 1] = verdict
end
if ARGV[2] ~= '' then
  redis.call('XDEL', KEYS[2], ARGV[2])
  if redis.call('XLEN', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[2])
  end
end
return verdicts
