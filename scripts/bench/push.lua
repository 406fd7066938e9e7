-- wrk script: every request is a distinct ~1 KB order event, delivered as Eventarc does
-- (binary-mode CloudEvent, MessagePublishedData body with base64 data).
--
-- Base64 works on 3-byte blocks, so the event is built from a fixed head and tail (encoded
-- once) around a short varying middle (event id and time), each a multiple of 3 bytes long:
-- only the middle is encoded per request, keeping the load generator cheap.

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = alphabet:sub(c1 + 1, c1 + 1) .. alphabet:sub(c2 + 1, c2 + 1)
      .. (b and alphabet:sub(c3 + 1, c3 + 1) or "=") .. (c and alphabet:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

-- JSON allows spaces between tokens: pad each part to a multiple of 3 bytes.
local function pad3(s)
  while #s % 3 ~= 0 do s = s .. " " end
  return s
end

local items = {}
for i = 1, 8 do
  items[#items + 1] = string.format('{"product_id":"sku-%04d","quantity":%d,"price":%d.99}', 1000 + i * 37, i, 10 + i)
end
local head = pad3('{"event_type":"order","order_id":"ord-bench","customer_id":"cust-0042","status":"paid",'
  .. '"total_amount":431.92,"currency":"EUR","items":[' .. table.concat(items, ",") .. '],'
  .. '"shipping":{"street":"Unter den Linden 77","city":"Berlin","postcode":"10117","country":"DE"},'
  .. '"note":"' .. string.rep("n", 260) .. '",')
local tail = pad3('"channel":"web"}')
local head64, tail64 = b64(head), b64(tail)

local run = os.time() % 100000
local counter = 0

wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["ce-specversion"] = "1.0"
wrk.headers["ce-type"] = "google.cloud.pubsub.topic.v1.messagePublished"
wrk.headers["ce-source"] = "//pubsub.googleapis.com/projects/bench/topics/events-raw"
wrk.headers["ce-id"] = "bench"

request = function()
  counter = counter + 1
  local middle = pad3(string.format('"event_id":"b%05d-%010d","timestamp":"2024-05-01T12:%02d:%02dZ",',
    run, counter, math.floor(counter / 60) % 60, counter % 60))
  local body = '{"message":{"data":"' .. head64 .. b64(middle) .. tail64
    .. '","messageId":"' .. run .. "-" .. counter .. '","publishTime":"2024-05-01T12:00:00Z"},'
    .. '"subscription":"projects/bench/subscriptions/eventarc"}'
  return wrk.format(nil, nil, nil, body)
end
