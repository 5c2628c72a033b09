local all = redis.call('ZRANGE', KEYS[1], 0, -1)
local edge = redis.call('HGET', KEYS[3], 'edge')
if edge then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. edge, '+inf')) do
    local q = redis.call('HINCRBY', KEYS[3], 'seq', 1)
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'k', 'left', 'id', id, 'r', ARGV[2], 'at', ARGV[3], 'q', q)
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[2])
return all
