#!/usr/bin/env bash
# Peak memory (VmHWM) of the gateway, Redis store, while 20 clients GET one 20 MiB outbound
# document at once, against its idle peak in the same run. Needs a release build, redis-server,
# python3 and curl; everything on 127.0.0.1; ports 6391, 8080, 9001, 9002 and 9100 free.
#   cargo build --release && benches/media-memory.sh
set -eu
cd "$(dirname "$0")/.."
work=$(mktemp -d)
head -c $((20 * 1024 * 1024)) /dev/urandom >"$work/big.pdf"
(cd "$work" && exec python3 -m http.server 9100 --bind 127.0.0.1 >/dev/null 2>&1) &
origin=$!
redis-server --port 6391 --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
redis=$!
./target/release/imchannel sandbox >/dev/null 2>&1 &
sandbox=$!
sleep 1
IMCHANNEL__STORE__REDIS_URL=redis://127.0.0.1:6391 RUST_LOG=warn ./target/release/imchannel >"$work/gateway.log" 2>&1 &
gateway=$!
trap 'kill $gateway $sandbox $redis $origin 2>/dev/null; rm -rf "$work"' EXIT
sleep 1
peak() { awk '/VmHWM/ {print $2}' "/proc/$gateway/status"; }
echo "idle: VmHWM $(peak) kB"
curl -s -u ctlive:change-me http://127.0.0.1:8080/imchannel/omni/1/advanced \
  -d '{"destinations":[{"to":{"phoneNumber":"41"}}],"whatsApp":{"text":"doc","fileUrl":"http://127.0.0.1:9100/big.pdf"}}' >/dev/null
items() { redis-cli -p 6391 --scan --pattern 'imch:media:*' | grep -Ev ':([0-9]+|claim)$'; }
until items | grep -q .; do sleep 0.1; done
id=$(items | head -1 | sed 's/imch:media://')
until [ "$(redis-cli -p 6391 hget "imch:media:$id" state)" = ready ]; do sleep 0.1; done
url="http://127.0.0.1:8080/default/imchannel/getDocumentMessage/$id"
echo "fetched into Redis: VmHWM $(peak) kB"
pids=()
for i in $(seq 20); do curl -s -o "$work/out$i" "$url" & pids+=($!); done
wait "${pids[@]}"
echo "after 20 concurrent GETs of 20 MiB: VmHWM $(peak) kB"
for i in $(seq 20); do cmp -s "$work/out$i" "$work/big.pdf" || echo "client $i got other bytes"; done
