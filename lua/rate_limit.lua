-- Rate limit decision for ngx_http_insite_gateway_module (backend=redis):
-- GCRA with nginx `limit_req nodelay` semantics, in one atomic step, so no
-- two nginx workers or servers can both read a state and both admit.
-- Same arithmetic as ngx_insite_gateway/ngx_insite_gateway_limit.c.
--
-- KEYS[1]  the limited key: insite:rl:<zone>:<key>
-- ARGV[1]  n       requests per period
-- ARGV[2]  period  in ms (1000 for r/s, 60000 for r/m)
-- ARGV[3]  burst
--
-- One request costs `period` units, n units drain per ms (integers only).
-- State: e (excess) and t (ms, Redis' clock: every server shares it).
--   e' = max(e - n * (now - t) + period, 0), a new key gives e' = 0;
--   admitted iff e' <= burst * period, and only then is e' stored.
-- Returns {admitted (1|0), e'}.
local n = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local state = redis.call('HMGET', KEYS[1], 'e', 't')
local e = 0
if state[1] and state[2] then
  local elapsed = now - tonumber(state[2])
  if elapsed < 0 then elapsed = 0 end
  e = tonumber(state[1]) - n * elapsed + period
  if e < 0 then e = 0 end
end

if e > burst * period then
  return {0, e}
end

redis.call('HSET', KEYS[1], 'e', string.format('%d', e), 't', string.format('%d', now))
-- drained after (e + period) / n ms: then a missing key means the same
redis.call('PEXPIRE', KEYS[1], math.ceil((e + period) / n) + 1000)
return {1, e}
