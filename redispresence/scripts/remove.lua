local edge = redis.call('HGET', KEYS[3], 'edge')
local n = 0
for i = 5, #ARGV do
  local old = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if old then
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
    if edge and tonumber(old) > tonumber(edge) then
      local q = redis.call('HINCRBY', KEYS[3], 'seq', 1)
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'k', ARGV[2], 'id', ARGV[i], 'r', ARGV[3], 'at', ARGV[4], 'q', q)
    end
  end
end
return n
