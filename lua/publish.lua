-- Publishes one message to an InsiteChart channel, atomically:
-- assign the channel's next sequence number, append the framed message to the
-- channel's capped history, and PUBLISH it to the nginx workers.  Running all
-- three in one script is what makes seq order equal delivery order across
-- every publisher (nginx workers, collectors) and every nginx server.
--
-- The arguments are built by insite_channel_publish_args()
-- (ngx_insite_ws/insite_channel.c), the one home of the key layout:
--
-- KEYS[1]  channel state hash   <prefix>{<channel>}:seq    fields seq, epoch
-- KEYS[2]  channel history zset <prefix>{<channel>}:hist   score = seq
-- KEYS[3]  idempotency key      <prefix>{<channel>}:idem:<key> (optional:
--          absent when the publish has no key)
-- ARGV[1]  channel name (already validated: [A-Za-z0-9_.:-]{1,128})
-- ARGV[2]  message type ("stock_update", ...)
-- ARGV[3]  data: a JSON value, inserted verbatim
-- ARGV[4]  timestamp, RFC 3339 UTC with milliseconds, made by the publisher
-- ARGV[5]  history length to keep (0 = none)
-- ARGV[6]  epoch candidate: a random id used only if the channel has none yet
-- ARGV[7]  pub/sub channel to PUBLISH on (<prefix>pub:<channel>), or on
--          Redis Cluster the sharded channel <prefix>{<channel>}:pub (in
--          the keys' slot)
-- ARGV[8]  idempotency key lifetime in seconds (>= 1 when KEYS[3] is given)
-- ARGV[9]  optional: "1" on Redis Cluster: SPUBLISH (sharded pub/sub: only
--          the channel's shard fans it out) instead of PUBLISH
--
-- Every argument is checked before the first write: a publish that answers
-- an error has changed nothing.
--
-- Returns { seq, epoch, duplicate }: duplicate = 1 when the idempotency key was
-- seen before; then nothing is published and seq is the first publish's.
-- The pub/sub payload is "<seq> <epoch>\n<message>" so subscribers can detect
-- gaps without parsing JSON.

local state, hist, idem = KEYS[1], KEYS[2], KEYS[3]

local keep = tonumber(ARGV[5])
local ttl = tonumber(ARGV[8])

if state == nil or hist == nil or #KEYS > 3 then
    return redis.error_reply('ERR insite publish: 2 or 3 keys expected')
end
if ARGV[1] == nil or ARGV[1] == '' or ARGV[2] == nil or ARGV[2] == ''
   or ARGV[3] == nil or ARGV[3] == '' or ARGV[6] == nil or ARGV[6] == ''
   or ARGV[7] == nil or ARGV[7] == '' then
    return redis.error_reply('ERR insite publish: missing argument')
end
if keep == nil or keep < 0 or keep ~= math.floor(keep) then
    return redis.error_reply('ERR insite publish: bad history length')
end
if idem ~= nil and (ttl == nil or ttl < 1 or ttl ~= math.floor(ttl)) then
    return redis.error_reply('ERR insite publish: bad idempotency lifetime')
end

if idem ~= nil then
    local prev = redis.call('GET', idem)
    if prev then
        local e = redis.call('HGET', state, 'epoch')
        return { tonumber(prev), e or '', 1 }
    end
end

-- one call, not HSETNX + HGET, for a channel that has its epoch already:
-- the script runs once per message
local epoch = redis.call('HGET', state, 'epoch')
if not epoch then
    epoch = ARGV[6]
    redis.call('HSET', state, 'epoch', epoch)
end
local seq = redis.call('HINCRBY', state, 'seq', 1)

local msg = '{"type":' .. cjson.encode(ARGV[2])
    .. ',"channel":"' .. ARGV[1]
    .. '","seq":' .. seq
    .. ',"ts":"' .. ARGV[4]
    .. '","data":' .. ARGV[3] .. '}'

if keep > 0 then
    redis.call('ZADD', hist, seq, msg)
    redis.call('ZREMRANGEBYRANK', hist, 0, -(keep + 1))
end

if idem ~= nil then
    redis.call('SET', idem, seq, 'EX', ttl)
end

local payload = seq .. ' ' .. epoch .. '\n' .. msg
redis.call(ARGV[9] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[7], payload)

return { seq, epoch, 0 }
