-- wrk script: sends the lines of the file named by $TOKENS in turn, one per request, as the
-- header $HEADER (default Authorization, each line after "Bearer "; for Cookie, as they are),
-- and stops after $STOP_AFTER responses when that is set.
local header = os.getenv("HEADER") or "Authorization"
local prefix = header == "Authorization" and "Bearer " or ""
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
    tokens[#tokens + 1] = prefix .. line
end
local i = 0
local stop_after = tonumber(os.getenv("STOP_AFTER") or "0")
local responses = 0

request = function()
    i = i % #tokens + 1
    return wrk.format(nil, nil, { [header] = tokens[i] })
end

response = function()
    responses = responses + 1
    if stop_after > 0 and responses >= stop_after then
        wrk.thread:stop()
    end
end
