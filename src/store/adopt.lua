-- Takes over the journal of an instance whose lease ran out, atomically, so that exactly one
-- instance adopts it and its owner, should it come back under the same identity, finds it gone.
-- KEYS[1]: the set of instances; KEYS[2]: the orphan's lease; KEYS[3]: the orphan's journal;
-- KEYS[4]: the name the adopted journal takes. ARGV[1]: the orphan's identity.
-- Returns 1 when the journal was adopted (renamed to KEYS[4]), 0 otherwise.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  return 0
end
redis.call('RENAME', KEYS[3], KEYS[4])
return 1
