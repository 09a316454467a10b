-- wrk script: sends the tokens of the file named by $TOKENS in turn, one per request, and stops
-- after $STOP_AFTER responses when that is set.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
    tokens[#tokens + 1] = "Bearer " .. line
end
local i = 0
local stop_after = tonumber(os.getenv("STOP_AFTER") or "0")
local responses = 0

request = function()
    i = i % #tokens + 1
    return wrk.format(nil, nil, { ["Authorization"] = tokens[i] })
end

response = function()
    responses = responses + 1
    if stop_after > 0 and responses >= stop_after then
        wrk.thread:stop()
    end
end
