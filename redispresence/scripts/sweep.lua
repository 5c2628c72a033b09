local st = KEYS[3]
local old = redis.call('HGET', st, 'edge')
local new = ARGV[3]
if not old then
  redis.call('HSET', st, 'edge', new)
  return 0
end
if tonumber(new) <= tonumber(old) then return 0 end
local n = 0
local function off(key, kind, room)
  local gone = redis.call('ZRANGEBYSCORE', key, '(' .. old, new, 'WITHSCORES')
  for j = 1, #gone, 2 do
    local q = redis.call('HINCRBY', st, 'seq', 1)
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'k', kind, 'id', gone[j], 'r', room, 'at', gone[j+1], 'q', q)
    redis.call('DEL', ARGV[4] .. room .. '\0' .. gone[j])
    n = n + 1
  end
end
off(KEYS[1], 'offline', '')
for _, room in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. old, '+inf')) do
  off(ARGV[1] .. room, 'leave', room)
end
redis.call('HSET', st, 'edge', new)
return n
