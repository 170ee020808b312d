-- wrk: every GET /v1/search/text asks something new (no cache can answer).
local colours = {"red", "black", "white", "navy", "grey", "beige", "olive", "pink"}
local items = {"dress", "shirt", "coat", "sneakers", "bag", "trousers", "sandals", "pullover"}
math.randomseed(os.time())
local serial = math.random(1, 1000000) * 1000

request = function()
  serial = serial + 1
  local q = colours[serial % #colours + 1] .. "+" .. items[math.floor(serial / 8) % #items + 1]
  return wrk.format("GET", "/v1/search/text?q=" .. q .. "+" .. serial)
end
