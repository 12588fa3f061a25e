-- Accepts a batch atomically: per candidate, check and mark its dedup key, keep its status rank
-- from going backwards, and append the new ones to the journal.
-- KEYS[1]: the journal stream.
-- ARGV[1]: the dedup TTL in seconds; then eight values per candidate:
--   dedup key, rank key ('' when unranked), rank, conversation, reference, payload, lane, after.
-- Returns one string per candidate: the journal entry id, '' for a duplicate, '-' for superseded.
local ttl = ARGV[1]
local verdicts = {}
for i = 2, #ARGV, 8 do
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
    end
  end
  verdicts[#verdicts + 1] = verdict
end
return verdicts
