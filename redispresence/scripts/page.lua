local function less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local key = KEYS[1]
local stop = redis.call('ZCOUNT', key, ARGV[1], '+inf')
local from = 0
if ARGV[4] then
  from = redis.call('ZCOUNT', key, '(' .. ARGV[3], '+inf')
  local to = from + redis.call('ZCOUNT', key, ARGV[3], ARGV[3])
  while from < to do
    local mid = math.floor((from + to) / 2)
    if less(redis.call('ZRANGE', key, mid, mid, 'REV')[1], ARGV[4]) then
      to = mid
    else
      from = mid + 1
    end
  end
end
stop = math.min(stop, from + tonumber(ARGV[2]))
if from >= stop then
  return {}
end
return redis.call('ZRANGE', key, from, stop - 1, 'REV', 'WITHSCORES')
