-- sluice: every counter of one request on one shard, decided atomically in one call.
--
-- Mirrors src/limiter/{fixed_window,sliding_window,sliding_log,token_bucket}.rs line by line;
-- tests/store_conformance.rs runs the same sequences against both and demands equal outcomes.
--
-- KEYS[i]  counter key i (already prefixed)
-- ARGV[1]  now in microseconds since the epoch, or 0 to read the Redis server's TIME
--          (production: replicas' clock skew does not matter)
-- ARGV[2]  mode: 0 charge each key on its own; 1 all-or-nothing (charge every key only if all
--          fit, else charge none); 2 dry run (decide, write nothing); 3 all-or-nothing
--          probe (write nothing; keys that would fit are reported as a check, hits 0);
--          4 reset (delete every key's state: the admin API's counter reset; returns nothing)
-- then 6 arguments per key: algorithm (1 fixed_window, 2 sliding_window, 3 sliding_log,
--          4 token_bucket), limit, period (s), burst, hits, refund (0/1)
-- Returns 6 integers per key: allowed (0/1), remaining, reset_after_us, retry_after_us,
--          used_before, used_after.

local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local floor, max, min = math.floor, math.max, math.min

local function ceil_div(a, b)
  return floor((a + b - 1) / b)
end

-- Keeps a key for `us` more microseconds (at least 1 ms).
local function expire_in(key, us)
  redis.call('PEXPIRE', key, max(1, ceil_div(us, 1000)))
end

-- envoyproxy/ratelimit's fixed window: key per window, every hit counted, denied or not.
local function fixed_window(key, limit, period, hits, refund, dry)
  local now_s = floor(now / 1000000)
  local window = now_s - (now_s % period)
  local k = key .. '_' .. window
  local before, after
  if refund then
    before = tonumber(redis.call('GET', k) or '0')
    after = max(0, before - hits)
    if before > 0 and not dry then
      redis.call('SET', k, after, 'KEEPTTL')
    end
  elseif dry then
    before = tonumber(redis.call('GET', k) or '0')
    after = before + hits
  elseif hits > 0 then
    after = redis.call('INCRBY', k, hits)
    before = after - hits
    if before == 0 then
      redis.call('EXPIRE', k, period)
    end
  else
    before = tonumber(redis.call('GET', k) or '0')
    after = before
  end
  local allowed = refund or after <= limit
  local reset = (period - now_s % period) * 1000000
  local remaining = 0
  if allowed then
    remaining = max(0, limit - after)
  end
  return { allowed and 1 or 0, remaining, reset, allowed and 0 or reset, before, after }
end

-- Sliding window counter: previous window weighted by its overlap (scaled by P, exact).
local function sliding_window(key, limit, period, hits, refund, dry)
  local p = period * 1000000
  local window = floor(now / p)
  local state = redis.call('HMGET', key, 'w', 'p', 'c')
  local w, prev, cur = tonumber(state[1] or '0'), tonumber(state[2] or '0'), tonumber(state[3] or '0')
  if w ~= window then
    if w + 1 == window then prev = cur else prev = 0 end
    cur = 0
  end
  local elapsed = now - window * p
  local before = prev * (p - elapsed) + cur * p
  local allowed = refund or before + hits * p <= limit * p
  if refund then
    cur = max(0, cur - hits)
  elseif allowed then
    cur = cur + hits
  end
  local after = prev * (p - elapsed) + cur * p
  local remaining = 0
  if allowed then
    remaining = floor(max(0, limit * p - after) / p)
  end
  local retry = 0
  if not allowed then
    if prev > 0 and cur + hits <= limit then
      local keep = floor((limit - cur - hits) * p / prev)
      retry = max(1, max(0, p - keep) - elapsed)
    elseif hits > limit then
      retry = (p - elapsed) + p
    else
      local e_needed = 0
      if cur > 0 then
        e_needed = max(0, p - floor((limit - hits) * p / cur))
      end
      retry = (p - elapsed) + e_needed
    end
  end
  local reset = 0
  if cur > 0 then reset = 2 * p - elapsed elseif prev > 0 then reset = p - elapsed end
  if not dry then
    redis.call('HSET', key, 'w', window, 'p', prev, 'c', cur)
    expire_in(key, (window + 2) * p - now)
  end
  return { allowed and 1 or 0, remaining, reset, retry, ceil_div(before, p), ceil_div(after, p) }
end

-- Sliding log: one sorted-set member "<at>:<seq>:<hits>" per admitted request, scored by <at>.
local function sliding_log(key, limit, period, hits, refund, dry)
  local p = period * 1000000
  local entries = redis.call('ZRANGEBYSCORE', key, string.format('(%d', now - p), '+inf', 'WITHSCORES')
  local total = 0
  local log = {}
  for i = 1, #entries, 2 do
    local n = tonumber(string.match(entries[i], ':(%d+)$'))
    log[#log + 1] = { entries[i], tonumber(entries[i + 1]), n }
    total = total + n
  end
  local before = total
  local allowed = refund or before + hits <= limit
  if dry then
    if allowed and not refund and hits > 0 then
      log[#log + 1] = { '', now, hits }
      total = total + hits
    end
  elseif refund then
    local left = hits
    for i = #log, 1, -1 do
      if left == 0 then break end
      local e = log[i]
      local n = min(e[3], left)
      left = left - n
      total = total - n
      redis.call('ZREM', key, e[1])
      if e[3] - n > 0 then
        local seq = redis.call('INCR', key .. ':seq')
        redis.call('ZADD', key, e[2], string.format('%d:%012d:%d', e[2], seq, e[3] - n))
      end
      log[i] = nil
    end
  elseif allowed and hits > 0 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - p)
    local seq = redis.call('INCR', key .. ':seq')
    redis.call('ZADD', key, now, string.format('%d:%012d:%d', now, seq, hits))
    log[#log + 1] = { '', now, hits }
    total = total + hits
  end
  local newest = log[#log]
  local reset = 0
  if newest then reset = max(0, newest[2] + p - now) end
  local retry = 0
  if not allowed then
    retry = max(1, reset)
    if hits <= limit then
      local left = total
      for i = 1, #log do
        left = left - log[i][3]
        if left + hits <= limit then
          retry = max(1, log[i][2] + p - now)
          break
        end
      end
    end
  end
  if newest and not dry then
    expire_in(key, reset)
    expire_in(key .. ':seq', reset)
  end
  local remaining = 0
  if allowed then remaining = max(0, limit - total) end
  return { allowed and 1 or 0, remaining, reset, retry, before, total }
end

-- Token bucket as GCRA: one stored theoretical arrival time (µs).
local function token_bucket(key, limit, period, burst, hits, refund, dry)
  local p = period * 1000000
  if limit == 0 then
    return { refund and 1 or 0, 0, 0, p, 0, 0 }
  end
  local t = max(1, floor(p / limit))
  local tolerance = t * burst
  local stored = tonumber(redis.call('GET', key) or '0')
  local tat = max(stored, now)
  local used_before = min(ceil_div(tat - now, t), burst)
  local cost = t * hits
  local allowed, retry = true, 0
  if refund then
    stored = max(tat - cost, now)
  else
    local new_tat = tat + cost
    local allow_at = new_tat - tolerance
    if now < allow_at then
      allowed, retry = false, allow_at - now
    else
      stored = new_tat
    end
  end
  local backlog = max(0, stored - now)
  if dry then
    -- decided, nothing written
  elseif backlog > 0 then
    redis.call('SET', key, stored, 'PX', max(1, ceil_div(backlog, 1000)))
  else
    redis.call('DEL', key)
  end
  local remaining = 0
  if allowed then remaining = floor(max(0, tolerance - backlog) / t) end
  return { allowed and 1 or 0, remaining, backlog, retry, used_before, min(ceil_div(backlog, t), burst) }
end

local mode = tonumber(ARGV[2])

-- Decides key i; `dry` writes nothing; `check` decides as if no hits were asked.
local function decide(i, dry, check)
  local b = 2 + (i - 1) * 6
  local key = KEYS[i]
  local algo = tonumber(ARGV[b + 1])
  local limit, period = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local burst, hits = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local refund = ARGV[b + 6] == '1'
  if check then
    hits, refund = 0, false
  end
  if algo == 1 then
    return fixed_window(key, limit, period, hits, refund, dry)
  elseif algo == 2 then
    return sliding_window(key, limit, period, hits, refund, dry)
  elseif algo == 3 then
    return sliding_log(key, limit, period, hits, refund, dry)
  end
  return token_bucket(key, limit, period, burst, hits, refund, dry)
end

if mode == 4 then
  for i = 1, #KEYS do
    local b = 2 + (i - 1) * 6
    local key = KEYS[i]
    if tonumber(ARGV[b + 1]) == 1 then
      local period = tonumber(ARGV[b + 3])
      local now_s = floor(now / 1000000)
      redis.call('DEL', key .. '_' .. (now_s - now_s % period))
    else
      redis.call('DEL', key, key .. ':seq')
    end
  end
  return {}
end

local results = {}
if mode == 1 then
  -- All or nothing: decide every key without writing; charge all only if all fit.
  local all_fit = true
  for i = 1, #KEYS do
    results[i] = decide(i, true, false)
    if results[i][1] == 0 then all_fit = false end
  end
  for i = 1, #KEYS do
    if all_fit then
      results[i] = decide(i, false, false)
    elseif results[i][1] == 1 then
      -- Would have fitted: report its state uncharged.
      results[i] = decide(i, true, true)
    end
  end
elseif mode == 3 then
  for i = 1, #KEYS do
    results[i] = decide(i, true, false)
    if results[i][1] == 1 then
      results[i] = decide(i, true, true)
    end
  end
else
  for i = 1, #KEYS do
    results[i] = decide(i, mode == 2, false)
  end
end

local out = {}
for i = 1, #KEYS do
  for _, v in ipairs(results[i]) do
    out[#out + 1] = v
  end
end
return out
