-- KEYS: the set (the users' or a room's), the shard's stream and state,
-- the member's connections. ARGV: the stream's length, the room ("": the
-- users), the ID, the time (µs), the connection's field, 'set' or 'del',
-- the data, the edge to set if the shard has none ('': publish nothing,
-- a Store without events).
local set, conns, st = KEYS[1], KEYS[4], KEYS[3]
local room, id, at = ARGV[2], ARGV[3], ARGV[4]
if ARGV[6] == 'set' then
  redis.call('HSET', conns, ARGV[5], ARGV[7])
else
  redis.call('HDEL', conns, ARGV[5])
end
local old = redis.call('ZSCORE', set, id)
redis.call('ZADD', set, 'GT', at, id)
local edge = redis.call('HGET', st, 'edge')
if not edge and ARGV[8] ~= '' then
  edge = ARGV[8]
  redis.call('HSET', st, 'edge', edge)
end
if not edge or tonumber(at) <= tonumber(edge) then
  return 0
end
local kind = 'update'
if not old or tonumber(old) <= tonumber(edge) then
  kind = 'online'
  if room ~= '' then kind = 'join' end
end
local all = redis.call('HGETALL', conns)
local order = {}
for i = 1, #all, 2 do order[#order + 1] = i end
table.sort(order, function(a, b) return all[a] < all[b] end)
local parts = {}
for _, i in ipairs(order) do
  local v = all[i + 1]
  parts[#parts + 1] = #v .. ':' .. v
end
local q = redis.call('HINCRBY', st, 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'k', kind, 'id', id, 'r', room, 'at', at, 'q', q, 'd', table.concat(parts))
return 1
