-- Publishes one message to an InsiteChart channel, atomically:
-- assign the channel's next sequence number, append the framed message to the
-- channel's capped history, and PUBLISH it to the nginx workers.  Running all
-- three in one script is what makes seq order equal delivery order across
-- every publisher (nginx workers, collectors) and every nginx server.
--
-- KEYS[1]  channel state hash   <prefix>ch:<channel>     fields seq, epoch
-- KEYS[2]  channel history zset <prefix>hist:<channel>   score = seq
-- KEYS[3]  idempotency key      <prefix>idem:<channel>:<key>, or "" for none
-- ARGV[1]  channel name (already validated: [A-Za-z0-9_.:-]{1,128})
-- ARGV[2]  message type ("stock_update", ...)
-- ARGV[3]  data: a JSON value, inserted verbatim
-- ARGV[4]  timestamp, RFC 3339 UTC with milliseconds, made by the publisher
-- ARGV[5]  history length to keep (0 = none)
-- ARGV[6]  epoch candidate: a random id used only if the channel has none yet
-- ARGV[7]  pub/sub channel to PUBLISH on (<prefix>pub:<channel>)
-- ARGV[8]  idempotency key lifetime in seconds
--
-- Returns { seq, epoch, duplicate }: duplicate = 1 when the idempotency key was
-- seen before; then nothing is published and seq is the first publish's.
-- The pub/sub payload is "<seq> <epoch>\n<message>" so subscribers can detect
-- gaps without parsing JSON.

local state, hist, idem = KEYS[1], KEYS[2], KEYS[3]

redis.call('HSETNX', state, 'epoch', ARGV[6])
local epoch = redis.call('HGET', state, 'epoch')

if idem ~= '' then
    local prev = redis.call('GET', idem)
    if prev then
        return { tonumber(prev), epoch, 1 }
    end
end

local seq = redis.call('HINCRBY', state, 'seq', 1)

local msg = '{"type":' .. cjson.encode(ARGV[2])
    .. ',"channel":"' .. ARGV[1]
    .. '","seq":' .. seq
    .. ',"ts":"' .. ARGV[4]
    .. '","data":' .. ARGV[3] .. '}'

local keep = tonumber(ARGV[5])
if keep > 0 then
    redis.call('ZADD', hist, seq, msg)
    redis.call('ZREMRANGEBYRANK', hist, 0, -(keep + 1))
end

if idem ~= '' then
    redis.call('SET', idem, seq, 'EX', tonumber(ARGV[8]))
end

redis.call('PUBLISH', ARGV[7], seq .. ' ' .. epoch .. '\n' .. msg)

return { seq, epoch, 0 }
