-- wrk script: posts Infobip webhooks with one inbound TEXT message each, every request a new
-- messageId (so none is a duplicate) spread over 10,000 conversations.
-- wrk -t2 -c64 -d10s -s benches/webhook.lua http://127.0.0.1:8080/imchannel/message
local counter = 0
local thread_tag = tostring(math.random(1, 1e9))

function request()
  counter = counter + 1
  local body = string.format(
    '{"results":[{"from":"4917%08d","to":"447860099299","integrationType":"WHATSAPP",' ..
    '"receivedAt":"2025-02-27T15:44:57.000+0000","messageId":"bench-%s-%d","pairedMessageId":null,' ..
    '"callbackData":null,"message":{"text":"Oh well","type":"TEXT"},"contact":{"name":"Teresa Gomes"},' ..
    '"price":{"pricePerMessage":0,"currency":"SEK"}}],"messageCount":1,"pendingMessageCount":0}',
    counter % 10000, thread_tag, counter)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Basic aW5mb2JpcDpjaGFuZ2UtbWU=",
  }, body)
end

function setup(thread)
  thread:set("thread_tag", tostring(math.random(1, 1e9)))
end
