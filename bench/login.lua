-- POST /openid with a fresh code per request: "<prefix>-<thread>-<n>", so every login is a
-- new user. With TOKENS_OUT set, each thread appends the tokens it gets to TOKENS_OUT.<thread>.
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  prefix = os.getenv("CODE_PREFIX") or "bench"
  n = 0
  local out = os.getenv("TOKENS_OUT")
  if out then
    tokens = io.open(out .. "." .. id, "a")
  end
end

function request()
  n = n + 1
  local body = string.format('{"code":"%s-%d-%d"}', prefix, id, n)
  return wrk.format("POST", "/openid", { ["Content-Type"] = "application/json" }, body)
end

if os.getenv("TOKENS_OUT") then
  function response(status, headers, body)
    if status == 200 then
      local token = body:match('"token":"([^"]+)"')
      if token then tokens:write(token, "\n") end
    end
  end
end
