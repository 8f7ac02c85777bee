-- Reads the position of several channels at once: { seq1, epoch1, seq2, ... }.
--
-- KEYS[i]  channel state hash <prefix>{<channel>}:seq (see
--          ngx_insite_ws/insite_channel.h for the layout)
--
-- Read only: a subscribe to a channel never published leaves nothing in
-- Redis (anyone may subscribe to any number of names).  Such a channel is
-- at seq 0 with the empty epoch ""; its first publish (lua/publish.lua)
-- makes the epoch, and a reader at seq 0 of "" has missed nothing.  If Redis
-- loses the hash, readers see seq 0 of "" and the next publish a new epoch:
-- clients see the change and are told with a "reset" instead of silently
-- missing data.

local out = {}
for i, key in ipairs(KEYS) do
    local v = redis.call('HMGET', key, 'seq', 'epoch')
    out[#out + 1] = tonumber(v[1] or '0')
    out[#out + 1] = v[2] or ''
end
return out
