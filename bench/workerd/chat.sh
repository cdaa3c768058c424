#!/usr/bin/env bash
# The WebSocket chat room (Cloudflare's workers-chat-demo protocol) on workerd, and ours when
# built, side by side on 127.0.0.1 (on-disk storage for both, the same load generator:
# durable-bench --ws, see bench/src/websocket.rs): connect time, memory per idle socket,
# broadcast latency and deliveries per second, for rooms of 100, 1,000 and 10,000 sockets.
#
#   bench/workerd/chat.sh                     # 100, 1,000 and 10,000 sockets
#   bench/workerd/chat.sh --quick             # 100 and 1,000 sockets, fewer messages
#   bench/workerd/chat.sh --sockets 100,1000  # other room sizes; --floor adds the client's
#                                             # ceiling (an in-memory server of our own)
#
# Installs workerd@1.20261117.1 from npm into bench/workerd/node_modules (gitignored), builds
# durable-bench (and the `chat` example, once examples/Cargo.toml declares it) in release
# mode, then runs the comparison; ours (`--chat-bin`) takes part when
# target/release/examples/chat exists.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version=1.20261117.1
workerd="$here/node_modules/@cloudflare/workerd-linux-64/bin/workerd"

if [ ! -x "$workerd" ] || ! grep -q "\"version\": \"$version\"" "$here/node_modules/workerd/package.json"; then
    (cd "$here" && npm install --no-save --no-audit --no-fund "workerd@$version" >&2)
fi
"$workerd" --version >&2

cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
if grep -q '^name = "chat"' examples/Cargo.toml; then
    cargo build --release -p durable-examples --example chat >&2
fi
cargo build --release -p durable-bench >&2

chat=()
if [ -x "$target/release/examples/chat" ]; then
    chat=(--chat-bin "$target/release/examples/chat")
else
    echo "chat.sh: $target/release/examples/chat not built: workerd only" >&2
fi

exec "$target/release/durable-bench" --ws "$@" "${chat[@]}" \
    --workerd-bin "$workerd" \
    --workerd-config "$here/chat.capnp"
