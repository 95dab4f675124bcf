-- GET /session with the tokens in the file TOKENS, round-robin.
function init(args)
  tokens = {}
  for line in io.lines(os.getenv("TOKENS")) do
    tokens[#tokens + 1] = "Bearer " .. line
  end
  i = 0
end

function request()
  i = i % #tokens + 1
  return wrk.format("GET", "/session", { Authorization = tokens[i] })
end
