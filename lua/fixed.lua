-- sluice: the common call alone — every key a fixed-window charge (hits > 0, no refund) on a
-- distinct key, charged each on its own (mode 0): envoyproxy/ratelimit's case. It computes
-- exactly what lua/limiter.lua does for such a call (its mode 0 fast path, and its general
-- path when INCRBY refuses a value) without that script's per-call setup;
-- src/store/redis.rs picks it, and tests/store_equivalence.rs compares the Redis store with
-- the memory store whichever script ran. Same KEYS/ARGV layout and results as limiter.lua
-- (epoch windows only: a calendar window, algorithm 5, always takes limiter.lua).

local floor, max, min = math.floor, math.max, math.min
local NOW_CAP = 4503599627370496 -- 2^52
local COUNTER_CAP = 4503599627370496 -- 2^52
local MAX_COUNT = 4294967295
local MAX_PERIOD = 31536000

local now = tonumber(ARGV[1]) or 0
local slack = 60000
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  slack = 0
end
now = min(max(0, floor(now)), NOW_CAP)
local now_s = floor(now / 1000000)

local function count(v, cap)
  if v == nil then return 0 end
  local x = tonumber(v)
  if not x or x ~= x then return 0 end
  return min(max(0, floor(x)), cap)
end

local function int(x)
  return string.format('%d', x)
end

local out = {}
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 7
  local limit = count(ARGV[b + 2], MAX_COUNT)
  local period = max(1, count(ARGV[b + 3], MAX_PERIOD))
  local hits = count(ARGV[b + 5], MAX_COUNT)
  local k = KEYS[i] .. '_' .. int(now_s - now_s % period)
  local before, after
  local raw = redis.pcall('INCRBY', k, int(hits))
  if type(raw) == 'number' then
    before = raw - hits
    if before < 0 or before > COUNTER_CAP or raw > COUNTER_CAP then
      before = min(max(0, before), COUNTER_CAP)
      after = min(before + hits, COUNTER_CAP)
      redis.call('SET', k, int(after), 'KEEPTTL')
    else
      after = raw
      if before == 0 then redis.call('PEXPIRE', k, int(period * 1000 + slack)) end
    end
  else
    -- Not a count (another type, not an integer, overflow): read as limiter.lua reads it.
    local v = redis.pcall('GET', k)
    if type(v) == 'table' then v = nil end
    before = count(v, COUNTER_CAP)
    after = min(before + hits, COUNTER_CAP)
    if tonumber(v) == nil then
      redis.call('SET', k, int(after), 'PX', int(period * 1000 + slack))
    elseif after ~= before then
      -- As limiter.lua: an unchanged (saturated) count is not written back.
      redis.call('SET', k, int(after), 'KEEPTTL')
    end
  end
  local allowed = after <= limit
  local reset = (period - now_s % period) * 1000000
  local remaining = 0
  if allowed then remaining = limit - min(limit, after) end
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = allowed and 0 or reset
  out[#out + 1] = before
  out[#out + 1] = after
end
return out
