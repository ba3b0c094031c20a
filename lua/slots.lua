-- sluice: the concurrency slot ops of one request on one shard, run atomically in one call.
--
-- Mirrors src/concurrency/memory.rs (MemorySlots::one) op by op; tests/redis_slots.rs drives
-- both with the same random ops on one manual clock and demands equal outcomes.
--
-- Per slot key K (prefixed; hash-tagged `{…}` in a cluster, so the three keys share a slot):
--   K:ids     ZSET  named leases: member = lease id (already bounded by keys::lease_member),
--                   score = expiry (ms since the epoch)
--   K:anon    ZSET  anonymous leases: member = a token unique to the call that took it
--                   (<replica origin><sequence>, fixed-width hex), score = expiry. Equal expiries
--                   pop in token order, so one replica's anonymous leases free oldest first.
--   K:absorb  HASH  lease id -> releases still to absorb (duplicates of a held id)
-- Ids and tokens live in different keys, so no lease id can pose as an anonymous lease.
-- Every key is PEXPIREd to the key's longest lease whenever a lease or mark is added, so an
-- abandoned key vanishes by itself; emptied ZSETs and HASHes vanish at once (Redis semantics).
--
-- KEYS     3 per op: K:ids, K:anon, K:absorb
-- ARGV[1]  now in ms since the epoch, or 0 to read the Redis server's TIME (production)
-- ARGV[2]  channel of freed-slot notices (<prefix>sluice:slots:freed)
-- ARGV[3]  origin: the calling replica's id (16 hex), leads each notice it causes
-- then 6 per op: action (1 acquire, 2 release, 3 peek, 4 note), max, lease ms,
--          named (1: a lease id, 0: anonymous), who (the lease id, or the anonymous token
--          an acquire would use), key (K without prefix or tag: the notice's payload)
-- Returns 4 integers per op: result (1 granted, 2 full, 3 in use, 4 released, 5 absorbed,
--          6 stray, 7 unchanged), held after the op, ms until the earliest lease ends (-1:
--          none held), leases this op found expired and dropped.
--
-- Expiry: each op first drops its key's leases with expiry <= now, at most SWEEP_MAX per op
-- (bounded work per call, whatever piled up); the rest go on the key's next ops (and the
-- whole key at its PEXPIRE). Memory drops all of them at once; the two differ only when more
-- than SWEEP_MAX leases of one key expired unseen.
-- A release that frees a slot, or an op that drops expired leases, publishes
-- "<origin>:<key>" once per key and call, waking other replicas' waiters.
-- Numbers: times stay below 2^53 (exact in Lua doubles and in ZSET scores) and reach Redis
-- as '%d' strings, never through tostring.

local max, min, floor = math.max, math.min, math.floor

local SWEEP_MAX = 100
local LEASE_CAP = 1099511627776 -- 2^40 ms (35 years): caps now + lease below 2^53
local NOW_CAP = 4503599627370496 -- 2^52

local GRANTED, FULL, IN_USE, RELEASED, ABSORBED, STRAY, UNCHANGED = 1, 2, 3, 4, 5, 6, 7

local now = tonumber(ARGV[1]) or 0
-- Keys outlive their leases by this much (ms), only when time is injected (tests): Redis
-- expires keys in real time, which passes while a test's clock stands still.
local slack = 60000
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
  slack = 0
end
now = min(max(0, floor(now)), NOW_CAP)
local channel, origin = ARGV[2], ARGV[3]

local function int(x)
  return string.format('%d', x)
end

-- The lowest (first = true) or highest score of a ZSET, or nil when empty.
local function edge(key, first)
  local r
  if first then
    r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  else
    r = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  end
  return tonumber(r[2])
end

-- Drops leases ended by now (at most SWEEP_MAX, named ones first); how many.
local function sweep(ids, anon, absorb)
  local gone = redis.call('ZRANGEBYSCORE', ids, '-inf', int(now), 'LIMIT', 0, SWEEP_MAX)
  local n = #gone
  if n > 0 then
    redis.call('ZREM', ids, unpack(gone))
    redis.call('HDEL', absorb, unpack(gone))
  end
  if n < SWEEP_MAX then
    local a = redis.call('ZRANGEBYSCORE', anon, '-inf', int(now), 'LIMIT', 0, SWEEP_MAX - n)
    if #a > 0 then
      redis.call('ZREM', anon, unpack(a))
      n = n + #a
    end
  end
  return n
end

-- Keeps the key's three parts until its longest lease ends (after adding a lease or a mark).
local function keep(ids, anon, absorb)
  local top = max(edge(ids, false) or 0, edge(anon, false) or 0)
  local ms = int(max(1, top - now) + slack)
  redis.call('PEXPIRE', ids, ms)
  redis.call('PEXPIRE', anon, ms)
  redis.call('PEXPIRE', absorb, ms)
end

local out, notify, order = {}, {}, {}
for i = 1, #KEYS / 3 do
  local ids, anon, absorb = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local b = 3 + (i - 1) * 6
  local action = tonumber(ARGV[b + 1])
  local slots = tonumber(ARGV[b + 2]) or 0
  local lease = min(max(0, tonumber(ARGV[b + 3]) or 0), LEASE_CAP)
  local named = ARGV[b + 4] == '1'
  local who, key = ARGV[b + 5], ARGV[b + 6]

  local expired = sweep(ids, anon, absorb)
  local held = redis.call('ZCARD', ids) + redis.call('ZCARD', anon)
  local result = UNCHANGED
  if action == 1 then
    if named and redis.call('ZSCORE', ids, who) then
      redis.call('HINCRBY', absorb, who, 1)
      keep(ids, anon, absorb)
      result = IN_USE
    elseif held < slots then
      if named then
        redis.call('ZADD', ids, int(now + lease), who)
        redis.call('HDEL', absorb, who) -- a fresh lease absorbs nothing
      else
        redis.call('ZADD', anon, int(now + lease), who)
      end
      keep(ids, anon, absorb)
      result = GRANTED
    else
      result = FULL
    end
  elseif action == 2 then
    if named then
      if redis.call('ZSCORE', ids, who) then
        local marks = tonumber(redis.call('HGET', absorb, who)) or 0
        if marks > 1 then
          redis.call('HINCRBY', absorb, who, -1)
          result = ABSORBED
        elseif marks == 1 then
          redis.call('HDEL', absorb, who)
          result = ABSORBED
        else
          redis.call('ZREM', ids, who)
          result = RELEASED
        end
      else
        result = STRAY
      end
    elseif #redis.call('ZPOPMIN', anon) > 0 then
      result = RELEASED
    else
      result = STRAY
    end
  elseif action == 4 and named and redis.call('ZSCORE', ids, who) then
    redis.call('HINCRBY', absorb, who, 1)
    keep(ids, anon, absorb)
  end

  held = redis.call('ZCARD', ids) + redis.call('ZCARD', anon)
  local first = min(edge(ids, true) or NOW_CAP * 2, edge(anon, true) or NOW_CAP * 2)
  local next_ms = -1
  if held > 0 then next_ms = max(0, first - now) end
  if (result == RELEASED or expired > 0) and not notify[key] then
    notify[key] = true
    order[#order + 1] = key
  end
  out[#out + 1] = result
  out[#out + 1] = held
  out[#out + 1] = next_ms
  out[#out + 1] = expired
end

for _, key in ipairs(order) do
  redis.call('PUBLISH', channel, origin .. ':' .. key)
end
return out
