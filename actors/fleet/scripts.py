"""The fleet's Lua scripts: every change to a key's fleet state is one atomic script.

Every key one script touches shares the hash tag of ``KEYS[1]`` (``hx:{namespace:key}:state``),
so the scripts run unchanged on Redis Cluster. Time is the server's (``TIME``), in
milliseconds; a node sends the age of each count, never its own clock. Values are plain
integers and short strings; anything else found in a key is repaired (counts) or reported as
garbage, never trusted: a hostile value can neither crash a script nor run as code.

Keys, with ``P`` = ``hx:{namespace:key}``:

* ``P:state`` (hash): ``state`` (closed / open / half_open), ``epoch``, ``at`` (ms the state
  began), ``by`` (node that wrote it), ``holder`` (probe lease holder, half_open only).
* ``P:b:<bucket>`` (hash): ``t`` (requests) and ``e`` (errors) counted in that bucket of the
  rolling window; expires by itself (window + two buckets + 1 s).
* ``P:nodes`` (sorted set): node -> last report (ms); ``P:tripped``: node -> last report while
  its own circuit was open (quorum mode).
* ``P:probe`` (string, ``SET NX PX``): ``node|epoch`` of the half-open probe's holder.
* ``P:snap`` (hash): node -> its dashboard messages for the key (JSON: ``command``, ``pool``),
  for the fleet-wide stream; written by a flush about once a second, expiring by itself.

Outside any command's tag, ``hx:{namespace}:keys`` (set) lists the fleet's command keys (each
node adds a key when it first takes part in its fleet).

A state change is published on the namespace's channel as JSON (``key``, ``state``, ``epoch``,
``at``, ``by``, ``holder``).
"""

from __future__ import annotations

__all__ = ["FLUSH", "RESOLVE"]

_COMMON = r"""
local function fmt(n) return string.format('%d', n) end
local garbage = 0
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- a write that a hostile value (wrong type, not an integer) must not break: repair and retry
local function write(key, ...)
  local ok = redis.pcall(...)
  if type(ok) == 'table' and ok.err then
    garbage = 1
    redis.call('DEL', key)
    return redis.call(...)
  end
  return ok
end
local function read_state(skey)
  local v = redis.pcall('HMGET', skey, 'state', 'epoch', 'at', 'by', 'holder')
  if type(v) == 'table' and v.err then garbage = 1; return 'closed', 0, 0, '', '' end
  local st, epoch, at = v[1], tonumber(v[2]), tonumber(v[3])
  if v[1] == false and v[2] == false then return 'closed', 0, 0, '', '' end
  if (st ~= 'closed' and st ~= 'open' and st ~= 'half_open') or epoch == nil or at == nil
     or epoch < 0 or epoch ~= math.floor(epoch) then
    garbage = 1
    return 'closed', 0, 0, '', ''
  end
  return st, epoch, at, v[4] or '', v[5] or ''
end
local function set_state(skey, st, epoch, at, by, holder)
  redis.call('DEL', skey)
  redis.call('HSET', skey, 'state', st, 'epoch', fmt(epoch), 'at', fmt(at), 'by', by,
             'holder', holder)
end
local function announce(channel, key, st, epoch, at, by, holder)
  redis.call('PUBLISH', channel, cjson.encode({key = key, state = st, epoch = fmt(epoch),
             at = fmt(at), by = by, holder = holder}))
end
"""

#: One node's flush for one key: add its counts, refresh its liveness, read the fleet's window
#: and state back, open the fleet circuit if it trips, take the probe lease if it may.
#: KEYS[1] = P:state. ARGV: node, counts ("age_ms:requests:errors;..."), tripped (0/1), mode,
#: request volume threshold, error percent threshold, quorum, window ms, buckets, live ms,
#: sleep window ms, lease ms, wants the probe (0/1), channel, command key, the node's dashboard
#: snapshot (JSON, or "" for none this time) and its time to live in ms.
#: Returns: now, requests, errors, nodes, state, epoch, at, by, holder, action, garbage.
FLUSH = (
    _COMMON
    + r"""
local skey = KEYS[1]
local prefix = string.sub(skey, 1, -7)
local node, channel, key = ARGV[1], ARGV[14], ARGV[15]
local now = now_ms()
local window, buckets = tonumber(ARGV[8]), tonumber(ARGV[9])
local width = math.max(1, math.floor(window / buckets))
local current = math.floor(now / width)
local ttl = window + 2 * width + 1000
for age, n, e in string.gmatch(ARGV[2], '(%d+):(%d+):(%d+)') do
  local bucket = math.floor((now - tonumber(age)) / width)
  if bucket > current - buckets then
    local bkey = prefix .. ':b:' .. fmt(bucket)
    if tonumber(n) > 0 then write(bkey, 'HINCRBY', bkey, 't', n) end
    if tonumber(e) > 0 then write(bkey, 'HINCRBY', bkey, 'e', e) end
    redis.call('PEXPIRE', bkey, ttl)
  end
end
local total, errors = 0, 0
for bucket = current - buckets + 1, current do
  local v = redis.pcall('HMGET', prefix .. ':b:' .. fmt(bucket), 't', 'e')
  if type(v) == 'table' and v.err then
    garbage = 1
  else
    local t, e = tonumber(v[1]), tonumber(v[2])
    if (v[1] and (t == nil or t < 0)) or (v[2] and (e == nil or e < 0)) then
      garbage = 1
    else
      total = total + (t or 0)
      errors = errors + (e or 0)
    end
  end
end
local live = tonumber(ARGV[10])
local nkey, tkey = prefix .. ':nodes', prefix .. ':tripped'
write(nkey, 'ZADD', nkey, now, node)
redis.call('ZREMRANGEBYSCORE', nkey, '-inf', now - window)
redis.call('PEXPIRE', nkey, 2 * window + 1000)
local nodes = redis.call('ZCARD', nkey)
if ARGV[16] ~= '' then
  local snap = prefix .. ':snap'
  write(snap, 'HSET', snap, node, ARGV[16])
  redis.call('PEXPIRE', snap, tonumber(ARGV[17]))
end
if ARGV[3] == '1' then
  write(tkey, 'ZADD', tkey, now, node)
  redis.call('PEXPIRE', tkey, 2 * live + 1000)
else
  redis.pcall('ZREM', tkey, node)
end
redis.pcall('ZREMRANGEBYSCORE', tkey, '-inf', now - live)
local tripped = redis.pcall('ZCARD', tkey)
if type(tripped) ~= 'number' then tripped = 0 end
local st, epoch, at, by, holder = read_state(skey)
local action = ''
if st == 'closed' then
  local trip
  if ARGV[4] == 'quorum' then
    trip = tripped >= tonumber(ARGV[7])
  else
    trip = total > 0 and total >= tonumber(ARGV[5]) and 100 * errors >= tonumber(ARGV[6]) * total
  end
  if trip then
    st, epoch, at, by, holder = 'open', math.max(epoch + 1, now), now, node, ''
    set_state(skey, st, epoch, at, by, holder)
    redis.call('DEL', prefix .. ':probe', tkey)
    announce(channel, key, st, epoch, at, by, holder)
    action = 'opened'
  end
elseif ARGV[13] == '1' and ((st == 'open' and now >= at + tonumber(ARGV[11])) or
    (st == 'half_open' and redis.call('EXISTS', prefix .. ':probe') == 0)) then
  local next_epoch = math.max(epoch + 1, now)
  local lease = redis.pcall('SET', prefix .. ':probe', node .. '|' .. fmt(next_epoch), 'NX', 'PX',
                            tonumber(ARGV[12]))
  if lease and type(lease) == 'table' and lease.ok then
    st, epoch, at, by, holder = 'half_open', next_epoch, now, node, node
    set_state(skey, st, epoch, at, by, holder)
    announce(channel, key, st, epoch, at, by, holder)
    action = 'probe'
  end
end
return {fmt(now), total, errors, nodes, st, fmt(epoch), fmt(at), by, holder, action, garbage}
"""
)

#: The probe's verdict, from the node holding the lease at a half-open epoch: close the fleet
#: circuit (its window restarts) or open it again. Fenced: nothing changes unless the state is
#: still that half-open epoch and the lease still this node's.
#: KEYS[1] = P:state. ARGV: node, epoch, outcome ("closed" / "open"), window ms, buckets,
#: channel, command key. Returns: "ok" or "stale", then state, epoch, at, by, holder.
RESOLVE = (
    _COMMON
    + r"""
local skey = KEYS[1]
local prefix = string.sub(skey, 1, -7)
local node, held, outcome, channel, key = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[6], ARGV[7]
local st, epoch, at, by, holder = read_state(skey)
local lease = redis.pcall('GET', prefix .. ':probe')
if st ~= 'half_open' or epoch ~= held or lease ~= node .. '|' .. ARGV[2] then
  return {'stale', st, fmt(epoch), fmt(at), by, holder}
end
local now = now_ms()
st, epoch, at, by, holder = outcome, math.max(epoch + 1, now), now, node, ''
set_state(skey, st, epoch, at, by, holder)
redis.call('DEL', prefix .. ':probe')
if outcome == 'closed' then
  local window, buckets = tonumber(ARGV[4]), tonumber(ARGV[5])
  local width = math.max(1, math.floor(window / buckets))
  local current = math.floor(now / width)
  for bucket = current - buckets - 2, current do
    redis.call('DEL', prefix .. ':b:' .. fmt(bucket))
  end
  redis.call('DEL', prefix .. ':tripped')
end
announce(channel, key, st, epoch, at, by, holder)
return {'ok', st, fmt(epoch), fmt(at), by, holder}
"""
)
