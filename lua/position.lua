-- Reads the position of several channels at once: { seq1, epoch1, seq2, ... }.
--
-- KEYS[i]  channel state hash <prefix>ch:<channel>
-- ARGV[i]  epoch candidate for KEYS[i], used only if the channel has none yet
--
-- A channel never published has seq 0 and gets its epoch here, on first
-- subscribe, so that a client can resume against it later.  If Redis loses
-- the hash, the next reader or publisher makes a new epoch: clients see the
-- change and are told with a "reset" instead of silently missing data.

local out = {}
for i, key in ipairs(KEYS) do
    redis.call('HSETNX', key, 'epoch', ARGV[i])
    local v = redis.call('HMGET', key, 'seq', 'epoch')
    out[#out + 1] = tonumber(v[1] or '0')
    out[#out + 1] = v[2]
end
return out
