-- The fault run's load: a login with a fresh code, then a lookup with a token issued
-- before the faults, in turn. Counts the answers by status; the driver reads the counts
-- from the last line, "STATUS <status>=<count> …", and wrk's own latency maximum.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  counts = {}
  tokens = {}
  for line in io.lines(os.getenv("TOKENS")) do
    tokens[#tokens + 1] = "Bearer " .. line
  end
end

function request()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("GET", "/session", { Authorization = tokens[(n / 2) % #tokens + 1] })
  end
  local body = string.format('{"code":"fault-%d-%d"}', id, n)
  return wrk.format("POST", "/openid", { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("counts")) do
      total[status] = (total[status] or 0) + count
    end
  end
  local line = "STATUS"
  for status, count in pairs(total) do
    line = line .. string.format(" %d=%d", status, count)
  end
  print(line)
  print(string.format("MAX_LATENCY_MS %.1f", latency.max / 1000))
  print(string.format("ERRORS connect=%d read=%d write=%d timeout=%d",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
