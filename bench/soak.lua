-- wrk script of scripts/soak: a steady rate (each connection waits $DELAY_MS between requests),
-- valid tokens only. Every $FIRST_SIGHT_EVERY-th request takes the next never-sent token of
-- $FIRST_SIGHT; the others cycle through $REPEATED. Once the driver writes $ROTATED_DIR/N.txt
-- (tokens signed with the N-th rotated key, sent only after entra_status shows that key), every
-- 5th request takes one of them.
local delay_ms = tonumber(os.getenv("DELAY_MS") or "10")
local every = tonumber(os.getenv("FIRST_SIGHT_EVERY") or "10")
local rotated_dir = os.getenv("ROTATED_DIR")

local function lines(path)
    local out = {}
    local file = io.open(path, "r")
    if not file then return out end
    for line in file:lines() do out[#out + 1] = "Bearer " .. line end
    file:close()
    return out
end

local repeated, first_sight, rotated = {}, {}, {}
local n, next_first, next_rotated, rotations = 0, 0, 0, 0

-- Threads take disjoint first-sight tokens: thread k of $THREADS takes k+1, k+1+THREADS, ...
local threads = tonumber(os.getenv("THREADS") or "1")
local made = 0
function setup(thread)
    thread:set("thread_index", made)
    made = made + 1
end

function init(args)
    repeated = lines(os.getenv("REPEATED"))
    first_sight = lines(os.getenv("FIRST_SIGHT"))
    next_first = (thread_index or 0) + 1 - threads
end

function delay()
    return delay_ms
end

local function look_for_rotation()
    local more = lines(rotated_dir .. "/" .. (rotations + 1) .. ".txt")
    if #more > 0 then
        rotations = rotations + 1
        for _, t in ipairs(more) do rotated[#rotated + 1] = t end
    end
end

function request()
    n = n + 1
    if n % 500 == 0 then look_for_rotation() end
    local token
    if #rotated > 0 and n % 5 == 0 then
        next_rotated = next_rotated % #rotated + 1
        token = rotated[next_rotated]
    elseif n % every == 0 and next_first + threads <= #first_sight then
        next_first = next_first + threads
        token = first_sight[next_first]
    else
        token = repeated[n % #repeated + 1]
    end
    return wrk.format(nil, nil, { ["Authorization"] = token })
end
