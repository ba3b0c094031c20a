-- sluice: every counter of one request on one shard, decided atomically in one call.
--
-- Mirrors src/limiter/{fixed_window,sliding_window,sliding_log,token_bucket}.rs line by line
-- and MemoryStore's modes; tests/store_conformance.rs and tests/store_equivalence.rs run the
-- same timelines against both stores and demand equal outcomes.
--
-- KEYS[i]  counter key i (already prefixed)
-- ARGV[1]  now in microseconds since the epoch, or 0 to read the Redis server's TIME
--          (production: replicas' clock skew does not matter)
-- ARGV[2]  mode: 0 charge each key on its own; 1 all-or-nothing (charge every key only if all
--          fit, else charge none); 2 dry run (decide, write nothing); 3 all-or-nothing
--          probe (write nothing; keys that would fit are reported as a check, hits 0);
--          4 reset (delete every key's state: the admin API's counter reset; returns nothing)
-- then 7 arguments per key: algorithm (1 fixed_window, 2 sliding_window, 3 sliding_log,
--          4 token_bucket, 5 fixed_window on calendar bounds), limit, period (s), burst,
--          hits, refund (0/1), UTC offset (s, calendar windows only; else 0)
-- Returns 6 integers per key: allowed (0/1), remaining, reset_after_us, retry_after_us,
--          used_before, used_after.
--
-- Idempotency (src/limiter/once.rs): a mode of 10 more than the above says the last key is the
-- call's idempotency record; after the ops' arguments come its ttl (ms), its kind (1 decision,
-- 2 settlement), the most repeats a decision's record answers (0: no bound), the key's ledger
-- tag and, for a settlement, two figures per op: the hits it charges and refunds before
-- netting. A counter's ledger (`<counter key>_#rl<tag>`) holds what the key still has reserved
-- there.
--   Decision: with no live record (or its repeats spent) the ops are decided as usual and, in
--   modes 0 and 1, the record is written ("<decided at> <repeats> <6 integers per op>") and
--   every charge the store counted is added to its counter's ledger, in this same script run,
--   so concurrent attempts charge this shard once. A live record answers for a repeat: its
--   outcomes replayed (reset shortened by the time since; a record not of as many ops makes
--   every op a check).
--   Settlement: no record; each refund is capped by its counter's ledger, netted with the
--   charge, and (modes 0 and 1, when charged) taken from the ledger.
-- One more integer is returned then: 1 when a record answered or a refund was capped, else 0.
--
-- Structure: each algorithm is load(op) -> state (one read of its Redis key), decide(state,
-- op) -> outcome (pure: it changes only the Lua table), store(state) (writes). A request's
-- keys are loaded once; an op on a key already seen in the request decides on the state the
-- previous op left (as the memory store does); writes happen only when the mode says so.
-- A key holding another Redis type (the rule changed algorithm) is read as fresh state and
-- replaced, as the memory store starts afresh; no input an op can hold raises an error.
--
-- Exactness: Lua numbers are doubles, exact for integers up to 2^53, and every value below
-- stays under that (src/limiter/mod.rs has the same constants): limits, burst and hits are at
-- most 2^32 - 1, periods at most 31536000 s, time is clamped to NOW_CAP (2^52 us); a
-- fixed-window count saturates at COUNTER_CAP (2^52); the sliding window weights the previous
-- window in millionths (S) of the period; a token bucket's tolerance, backlog and retry are
-- capped at TIME_CAP (2^50 us) and n*T is formed only once known to be below a bound. floor(a
-- / b) is exact for integers a, b < 2^53. Numbers reach Redis as '%d' strings or as command
-- arguments (Redis formats those with 17 digits): never through tostring (14 digits).

local floor, max, min = math.floor, math.max, math.min

local NOW_CAP = 4503599627370496 -- 2^52
local COUNTER_CAP = 4503599627370496 -- 2^52
local TIME_CAP = 1125899906842624 -- 2^50
local S = 1000000 -- sliding-window weight steps per period
local MAX_COUNT = 4294967295 -- the most hits any limit admits
local MAX_PERIOD = 31536000 -- the longest period (s); longer ones are clamped to it
local MONTH, YEAR, DAY = 2592000, 31536000, 86400 -- a calendar window's civil month and year
local MAX_OFFSET = 50400 -- a calendar's UTC offset is within +-14:00

local now = tonumber(ARGV[1]) or 0
-- Keys outlive their state by this much (ms). Only when time is injected (tests): Redis
-- expires keys in real time, which passes while a test's clock stands still.
local slack = 60000
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  slack = 0
end
now = min(max(0, floor(now)), NOW_CAP)

local function ceil_div(a, b)
  return floor((a + b - 1) / b)
end

local function int(x)
  return string.format('%d', x)
end

-- A number read from Redis as a non-negative integer at most `cap` (0 if not a number).
local function count(v, cap)
  if v == nil then return 0 end
  local x = tonumber(v)
  if not x or x ~= x then return 0 end
  return min(max(0, floor(x)), cap)
end

-- A read that tolerates a key of another type (WRONGTYPE): returns nil, true then.
local function read(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then return nil, true end
  return r, false
end

-- Keeps a key for `us` more microseconds (at least 1 ms).
local function expire_in(key, us)
  redis.call('PEXPIRE', key, int(max(1, ceil_div(us, 1000)) + slack))
end

---------------------------------------------------------------------------------------------
-- Calendar bounds (src/limiter/calendar.rs): proleptic Gregorian dates <-> days since
-- 1970-01-01, counted in 400-year eras of years that start on 1 March. All integers here are
-- below 2^40: floor(a / b) is exact.

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- Year and month of `days` since 1970-01-01.
local function civil_from_days(days)
  local z = days + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

-- The calendar window holding now_s: a civil month or year, else whole periods from the
-- epoch's local midnight; `off` seconds east of UTC. The start is clamped at 0.
local function calendar_bounds(period, off, now_s)
  local t = now_s + off
  local first, stop
  if period == MONTH or period == YEAR then
    local days = floor(t / DAY)
    local y, m = civil_from_days(days)
    if period == YEAR then
      first, stop = days_from_civil(y, 1, 1), days_from_civil(y + 1, 1, 1)
    elseif m == 12 then
      first, stop = days_from_civil(y, 12, 1), days_from_civil(y + 1, 1, 1)
    else
      first, stop = days_from_civil(y, m, 1), days_from_civil(y, m + 1, 1)
    end
    first, stop = first * DAY - off, stop * DAY - off
  else
    first = t - t % period - off
    stop = first + period
  end
  return max(0, first), stop
end

---------------------------------------------------------------------------------------------
-- Fixed window (envoyproxy/ratelimit's): key `<key>_<window start s>`, every hit counted.
-- Returns the window's start, now (s) and the window's end.

local function fixed_window_of(op)
  local now_s = floor(now / 1000000)
  if op.cal then
    local first, stop = calendar_bounds(op.period, op.offset, now_s)
    return first, now_s, stop
  end
  local first = now_s - now_s % op.period
  return first, now_s, first + op.period
end

-- How long a new window's key lives (ms): upstream's whole period for epoch windows, to the
-- end of the window for calendar ones (plus the test slack).
local function fixed_ttl(op, stop)
  if op.cal then return max(1, ceil_div(stop * 1000000 - now, 1000)) + slack end
  return op.period * 1000 + slack
end

local function fixed_load(op)
  local window = fixed_window_of(op)
  local k = op.key .. '_' .. int(window)
  local v = read('GET', k)
  return { algo = 1, key = op.key, window = window, count = count(v, COUNTER_CAP),
           exists = tonumber(v) ~= nil }
end

local function fixed_decide(st, op)
  local window, now_s, stop = fixed_window_of(op)
  if st.window ~= window then
    st.window, st.count, st.exists = window, 0, false
  end
  st.ttl = fixed_ttl(op, stop)
  local before = min(st.count, COUNTER_CAP)
  local after
  if op.refund then
    after = before - min(before, op.hits)
  else
    after = min(before + op.hits, COUNTER_CAP)
  end
  st.count = after
  if after ~= before then st.dirty = true end
  local allowed = op.refund or after <= op.limit
  local reset = (stop - now_s) * 1000000
  local remaining = 0
  if allowed then remaining = op.limit - min(op.limit, after) end
  return { allowed and 1 or 0, remaining, reset, allowed and 0 or reset, before, after }
end

local function fixed_store(st)
  local k = st.key .. '_' .. int(st.window)
  if st.exists then
    redis.call('SET', k, int(st.count), 'KEEPTTL')
  else
    redis.call('SET', k, int(st.count), 'PX', int(st.ttl))
  end
end

---------------------------------------------------------------------------------------------
-- Sliding window counter: hash `<key>` {w = window index, p = previous count, c = current}.

local function sliding_load(op)
  local w, prev, cur = 0, 0, 0
  local h, foreign = read('HMGET', op.key, 'w', 'p', 'c')
  if h then
    w, prev, cur = count(h[1], NOW_CAP), count(h[2], MAX_COUNT), count(h[3], MAX_COUNT)
  end
  return { algo = 2, key = op.key, window = w, prev = prev, cur = cur, foreign = foreign }
end

local function sliding_decide(st, op)
  local period = op.period
  local p = period * 1000000
  local window = floor(now / p)
  if st.window ~= window then
    if st.window + 1 == window then st.prev = st.cur else st.prev = 0 end
    st.window, st.cur = window, 0
  end
  st.p = p
  local elapsed = now - window * p
  local weight = S - floor(elapsed / period)
  local limit, hits = op.limit, op.hits
  local before = st.prev * weight + st.cur * S
  local allowed = op.refund or (st.cur + hits <= limit and before + hits * S <= limit * S)
  if op.refund then
    st.cur = st.cur - min(st.cur, hits)
    st.dirty = true
  elseif allowed and hits > 0 then
    st.cur = st.cur + hits
    st.dirty = true
  end
  local after = st.prev * weight + st.cur * S
  local remaining = 0
  if allowed then remaining = floor((limit * S - min(limit * S, after)) / S) end
  local retry = 0
  if not allowed then
    if st.prev > 0 and st.cur + hits <= limit then
      local keep = floor((limit - st.cur - hits) * S / st.prev)
      retry = max(1, (S - min(S, keep)) * period - elapsed)
    elseif hits > limit then
      retry = (p - elapsed) + p
    else
      local e_needed = 0
      if st.cur > 0 then
        e_needed = (S - min(S, floor((limit - hits) * S / st.cur))) * period
      end
      retry = (p - elapsed) + e_needed
    end
  end
  local reset = 0
  if st.cur > 0 then reset = 2 * p - elapsed elseif st.prev > 0 then reset = p - elapsed end
  return { allowed and 1 or 0, remaining, reset, retry, ceil_div(before, S), ceil_div(after, S) }
end

local function sliding_store(st)
  if st.foreign then redis.call('DEL', st.key) end
  redis.call('HSET', st.key, 'w', int(st.window), 'p', int(st.prev), 'c', int(st.cur))
  expire_in(st.key, (st.window + 2) * st.p - now)
end

---------------------------------------------------------------------------------------------
-- Sliding log: zset `<key>`, one member "<at>:<seq>:<hits>" per admitted request scored by
-- <at>; `<key>:seq` numbers members so equal times keep their order.

local function log_load(op)
  local st = { algo = 3, key = op.key, e = {}, head = 1, total = 0, gone = {}, maxseq = 0 }
  local raw, foreign = read('ZRANGE', op.key, 0, -1, 'WITHSCORES')
  st.foreign = foreign
  if not raw then return st end
  local e, total, maxseq, match = st.e, 0, 0, string.match
  for i = 1, #raw, 2 do
    local m = raw[i]
    -- Members are "<at>:<seq>:<hits>"; anything else counts no hits.
    local _, seq, n = match(m, '^(%d+):(%d+):(%d+)$')
    n = min(tonumber(n) or 0, MAX_COUNT)
    e[#e + 1] = { m = m, at = count(raw[i + 1], NOW_CAP), n = n }
    total = total + n
    maxseq = max(maxseq, tonumber(seq) or 0)
  end
  st.total, st.maxseq = total, maxseq
  return st
end

local function log_decide(st, op)
  local p = op.period * 1000000
  st.p = p
  local e = st.e
  while st.head <= #e and e[st.head].at + p <= now do
    st.total = st.total - e[st.head].n
    st.evicted = e[st.head].at
    st.head = st.head + 1
    st.dirty = true
  end
  local limit, hits = op.limit, op.hits
  local before = st.total
  local allowed = op.refund or before + hits <= limit
  if op.refund then
    local left = hits
    while left > 0 and #e >= st.head do
      local last = e[#e]
      local n = min(last.n, left)
      last.n, left, st.total = last.n - n, left - n, st.total - n
      if last.m then
        st.gone[#st.gone + 1] = last.m
        last.m = nil
      end
      if last.n == 0 then e[#e] = nil end
      st.dirty = true
    end
  elseif allowed and hits > 0 then
    e[#e + 1] = { at = now, n = hits }
    st.total = st.total + hits
    st.dirty = true
  end
  local reset = 0
  if #e >= st.head then reset = max(0, e[#e].at + p - now) end
  local retry = 0
  if not allowed then
    retry = max(1, reset)
    if hits <= limit then
      local left = st.total
      for i = st.head, #e do
        left = left - e[i].n
        if left + hits <= limit then
          retry = max(1, e[i].at + p - now)
          break
        end
      end
    end
  end
  local remaining = 0
  if allowed then remaining = max(0, limit - st.total) end
  return { allowed and 1 or 0, remaining, reset, retry, before, st.total }
end

-- The next member number: `<key>:seq` incremented, above every member read (a lost or
-- foreign `:seq` key is replaced rather than raising an error).
local function log_seq(st)
  local seqkey = st.key .. ':seq'
  local r = redis.pcall('INCR', seqkey)
  if type(r) ~= 'number' or r <= st.maxseq then
    r = st.maxseq + 1
    redis.call('SET', seqkey, int(r))
  end
  st.maxseq = r
  return r
end

local function log_store(st)
  local key, e = st.key, st.e
  if st.foreign then redis.call('DEL', key) end
  if st.evicted then redis.call('ZREMRANGEBYSCORE', key, '-inf', int(st.evicted)) end
  for _, m in ipairs(st.gone) do redis.call('ZREM', key, m) end
  for i = st.head, #e do
    local x = e[i]
    if not x.m then
      x.m = string.format('%d:%012d:%d', x.at, log_seq(st), x.n)
      redis.call('ZADD', key, int(x.at), x.m)
    end
  end
  if #e >= st.head then
    local keep = max(0, e[#e].at + st.p - now)
    expire_in(key, keep)
    expire_in(key .. ':seq', keep)
  end
end

---------------------------------------------------------------------------------------------
-- Token bucket as GCRA: string `<key>` = theoretical arrival time (us).

local function bucket_load(op)
  return { algo = 4, key = op.key, tat = count(read('GET', op.key), NOW_CAP + TIME_CAP) }
end

local function bucket_decide(st, op)
  local p = op.period * 1000000
  if op.limit == 0 then
    return { op.refund and 1 or 0, 0, 0, p, 0, 0 }
  end
  local t = max(1, floor(p / op.limit))
  local burst, hits = op.burst, op.hits
  local tolerance
  if burst > floor(TIME_CAP / t) then tolerance = TIME_CAP else tolerance = t * burst end
  local backlog = min(max(st.tat, now), now + TIME_CAP) - now
  local allowed, retry, left = false, 0, backlog
  if op.refund then
    allowed = true
    if hits > floor(backlog / t) then left = 0 else left = backlog - t * hits end
  elseif backlog <= tolerance and hits <= floor((tolerance - backlog) / t) then
    allowed, left = true, backlog + t * hits
  elseif hits > floor((TIME_CAP + tolerance - backlog) / t) then
    retry = TIME_CAP
  else
    retry = backlog + t * hits - tolerance
  end
  if allowed then
    st.tat = now + left
    if hits > 0 or op.refund then st.dirty = true end
  end
  local remaining = 0
  if allowed then remaining = floor((tolerance - min(tolerance, left)) / t) end
  return { allowed and 1 or 0, remaining, left, retry, min(ceil_div(backlog, t), burst),
           min(ceil_div(left, t), burst) }
end

local function bucket_store(st)
  local backlog = st.tat - now
  if backlog > 0 then
    redis.call('SET', st.key, int(st.tat), 'PX', int(max(1, ceil_div(backlog, 1000)) + slack))
  else
    redis.call('DEL', st.key)
  end
end

---------------------------------------------------------------------------------------------

local LOAD = { fixed_load, sliding_load, log_load, bucket_load }
local DECIDE = { fixed_decide, sliding_decide, log_decide, bucket_decide }
local STORE = { fixed_store, sliding_store, log_store, bucket_store }
local FRESH = {
  function(op) return { algo = 1, key = op.key, window = -1, count = 0, exists = false } end,
  function(op) return { algo = 2, key = op.key, window = 0, prev = 0, cur = 0, foreign = true } end,
  function(op)
    return { algo = 3, key = op.key, e = {}, head = 1, total = 0, gone = {}, maxseq = 0,
             foreign = true }
  end,
  function(op) return { algo = 4, key = op.key, tat = 0 } end,
}

local mode = tonumber(ARGV[2]) or 0

-- Ops, and the idempotency record when the mode says so.
local n = #KEYS
local record, record_ttl, record_kind, record_max, ledger_tag = nil, 0, 1, 0, ''
if mode >= 10 then
  mode = mode - 10
  n = #KEYS - 1
  record = KEYS[#KEYS]
  record_ttl = max(1, count(ARGV[2 + 7 * n + 1], 86400000))
  record_kind = count(ARGV[2 + 7 * n + 2], 2)
  record_max = count(ARGV[2 + 7 * n + 3], MAX_COUNT)
  ledger_tag = ARGV[2 + 7 * n + 4] or ''
end
local LEDGER_CAP = COUNTER_CAP

-- A counter's ledger key for this call's idempotency key.
local function ledger_of(op)
  return op.key .. '_#rl' .. ledger_tag
end

local ops = {}
for i = 1, n do
  local b = 2 + (i - 1) * 7
  local algo = tonumber(ARGV[b + 1])
  -- A calendar window (5) is the fixed window (1) with calendar bounds.
  local cal = algo == 5
  if cal then algo = 1 end
  if algo ~= 1 and algo ~= 2 and algo ~= 3 then algo = 4 end
  local offset = tonumber(ARGV[b + 7]) or 0
  if offset ~= offset then offset = 0 end
  ops[i] = {
    key = KEYS[i],
    algo = algo,
    limit = count(ARGV[b + 2], MAX_COUNT),
    period = max(1, count(ARGV[b + 3], MAX_PERIOD)),
    burst = count(ARGV[b + 4], MAX_COUNT),
    hits = count(ARGV[b + 5], MAX_COUNT),
    refund = ARGV[b + 6] == '1',
    cal = cal,
    offset = min(max(floor(offset), -MAX_OFFSET), MAX_OFFSET),
  }
end

if mode == 4 then
  for _, op in ipairs(ops) do
    if op.algo == 1 then
      redis.call('DEL', op.key .. '_' .. int(fixed_window_of(op)))
    else
      redis.call('DEL', op.key, op.key .. ':seq')
    end
  end
  return {}
end

-- A key's state as stored, in the op's algorithm (fresh when the key holds another type).
local function load(op)
  return LOAD[op.algo](op)
end

-- Decides op on the state `st` (replaced afresh if it belongs to another algorithm).
local function decide(st, op)
  if st.algo ~= op.algo then st = FRESH[op.algo](op) end
  return DECIDE[op.algo](st, op), st
end

-- Decides every op in order; an op on a key seen before continues from the state left.
-- Fast path, mode 0 only: a fixed-window charge on a key the request touches once is one
-- INCRBY, as upstream, giving exactly what load/decide/store would (the count saturates at
-- COUNTER_CAP, a stored value below 0 counts as 0). A refund, a check, a repeated key or a
-- value INCRBY refuses (not an integer, another type, overflow) takes the general path.
local function fixed_incr(op)
  local window, now_s, stop = fixed_window_of(op)
  local k = op.key .. '_' .. int(window)
  local raw = redis.pcall('INCRBY', k, int(op.hits))
  if type(raw) ~= 'number' then return nil end
  local before = raw - op.hits
  local after
  if before < 0 or before > COUNTER_CAP or raw > COUNTER_CAP then
    before = min(max(0, before), COUNTER_CAP)
    after = min(before + op.hits, COUNTER_CAP)
    redis.call('SET', k, int(after), 'KEEPTTL')
  else
    after = raw
    if before == 0 then redis.call('PEXPIRE', k, int(fixed_ttl(op, stop))) end
  end
  local allowed = after <= op.limit
  local reset = (stop - now_s) * 1000000
  local remaining = 0
  if allowed then remaining = op.limit - min(op.limit, after) end
  return { allowed and 1 or 0, remaining, reset, allowed and 0 or reset, before, after }
end

-- A settlement: each refund capped by what the key still has reserved on its counter.
local repeated = false
local took, held = {}, {}
if record and record_kind == 2 then
  local base = 2 + 7 * n + 4
  for i, op in ipairs(ops) do
    local charged = count(ARGV[base + 2 * i - 1], MAX_COUNT)
    local refund = count(ARGV[base + 2 * i], MAX_COUNT)
    if refund > 0 then
      held[i] = count(read('GET', ledger_of(op)), LEDGER_CAP)
      took[i] = min(refund, held[i])
      if took[i] < refund then repeated = true end
      if charged >= took[i] then
        op.hits, op.refund = charged - took[i], false
      else
        op.hits, op.refund = took[i] - charged, true
      end
    end
  end
end

-- A live record answers for a decision.
if record and record_kind == 1 and (mode == 0 or mode == 1 or mode == 3) then
  local v = read('GET', record)
  if type(v) == 'string' then
    local nums = {}
    for x in string.gmatch(v, '%d+') do nums[#nums + 1] = tonumber(x) end
    local repeats = nums[2] or 0
    if record_max == 0 or repeats < record_max then
      repeated = true
      if record_max > 0 and mode ~= 3 then
        -- One more repeat: the record keeps its outcomes and its expiry.
        nums[2] = repeats + 1
        local parts = {}
        for i, x in ipairs(nums) do parts[i] = int(x) end
        redis.call('SET', record, table.concat(parts, ' '), 'KEEPTTL')
      end
    end
    if not repeated then
      -- Its repeats spent: a first attempt again (the record is written afresh below).
    elseif #nums ~= 2 + 6 * n then
      -- Not lining up with the record: charge nothing, only check.
      for _, op in ipairs(ops) do
        op.hits, op.refund = 0, false
      end
    else
      local elapsed = max(0, now - nums[1])
      local out = {}
      for i = 1, n do
        local b = 2 + (i - 1) * 6
        out[#out + 1] = nums[b + 1]
        out[#out + 1] = nums[b + 2]
        out[#out + 1] = max(0, nums[b + 3] - elapsed)
        out[#out + 1] = nums[b + 4]
        out[#out + 1] = nums[b + 5]
        out[#out + 1] = nums[b + 6]
      end
      out[#out + 1] = 1
      return out
    end
  end
end

local uses = {}
if mode == 0 then
  for _, op in ipairs(ops) do uses[op.key] = (uses[op.key] or 0) + 1 end
end

local results, states, order = {}, {}, {}
for i, op in ipairs(ops) do
  if mode == 0 and op.algo == 1 and not op.refund and op.hits > 0 and uses[op.key] == 1 then
    results[i] = fixed_incr(op)
  end
  if not results[i] then
    local st = states[op.key]
    if not st then
      st = load(op)
      order[#order + 1] = op.key
    end
    results[i], states[op.key] = decide(st, op)
  end
end

local all_fit = true
for i = 1, #ops do
  if results[i][1] == 0 then all_fit = false end
end

if mode == 0 or (mode == 1 and all_fit) then
  for _, key in ipairs(order) do
    local st = states[key]
    if st.dirty then STORE[st.algo](st) end
  end
elseif mode == 3 or mode == 1 then
  -- Not all fit (or a probe): nothing is charged; ops that fitted are reported allowed, with
  -- the numbers of a check of the state as stored.
  for i, op in ipairs(ops) do
    if results[i][1] == 1 then
      local check = { key = op.key, algo = op.algo, limit = op.limit, period = op.period,
                      burst = op.burst, hits = 0, refund = false, cal = op.cal,
                      offset = op.offset }
      local r = decide(load(check), check)
      r[1], r[4] = 1, 0
      results[i] = r
    end
  end
end

local out = {}
for i = 1, #ops do
  for _, v in ipairs(results[i]) do
    out[#out + 1] = v
  end
end
if record then
  local charged = mode == 0 or (mode == 1 and all_fit)
  if record_kind == 2 then
    if charged then
      for i, op in ipairs(ops) do
        if took[i] and took[i] > 0 then
          local left = held[i] - took[i]
          if left > 0 then
            redis.call('SET', ledger_of(op), int(left), 'KEEPTTL')
          else
            redis.call('DEL', ledger_of(op))
          end
        end
      end
    end
  elseif not repeated and (mode == 0 or mode == 1) then
    -- "<decided at, us> <repeats> <6 integers per op>": every value a non-negative integer
    -- below 2^53.
    local parts = { int(now), '0' }
    for i = 1, #ops do
      for _, v in ipairs(results[i]) do parts[#parts + 1] = int(v) end
    end
    redis.call('SET', record, table.concat(parts, ' '), 'PX', int(record_ttl))
    if charged then
      -- What the store counted is reserved in the key's ledger (a denied fixed-window hit is
      -- counted, as upstream; the other algorithms count only what they admit).
      for i, op in ipairs(ops) do
        if not op.refund and op.hits > 0 and (results[i][1] == 1 or op.algo == 1) then
          local lk = ledger_of(op)
          local total = min(count(read('GET', lk), LEDGER_CAP) + op.hits, LEDGER_CAP)
          redis.call('SET', lk, int(total), 'PX', int(record_ttl))
        end
      end
    end
  end
  out[#out + 1] = repeated and 1 or 0
end
return out
