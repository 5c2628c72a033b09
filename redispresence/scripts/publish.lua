local st = KEYS[3]
local edge = redis.call('HGET', st, 'edge')
if not edge then
  edge = ARGV[3]
  redis.call('HSET', st, 'edge', edge)
end
edge = tonumber(edge)
for i = 4, #ARGV, 3 do
  local room, id, score = ARGV[i], ARGV[i+1], ARGV[i+2]
  local key, kind = KEYS[1], 'online'
  if room ~= '' then
    key, kind = ARGV[1] .. room, 'join'
  end
  local old = redis.call('ZSCORE', key, id)
  redis.call('ZADD', key, 'GT', score, id)
  if tonumber(score) > edge and (not old or tonumber(old) <= edge) then
    local q = redis.call('HINCRBY', st, 'seq', 1)
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'k', kind, 'id', id, 'r', room, 'at', score, 'q', q)
  end
end
return 0
