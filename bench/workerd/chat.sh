#!/usr/bin/env bash
# The WebSocket chat room (Cloudflare's workers-chat-demo protocol) on workerd and ours,
# side by side on 127.0.0.1 (on-disk storage for both, the same load generator:
# durable-bench --ws, see bench/src/websocket.rs): connect time, memory per idle socket,
# broadcast latency and deliveries per second, for rooms of 100, 1,000 and 10,000 sockets.
#
#   bench/workerd/chat.sh                     # 100, 1,000 and 10,000 sockets
#   bench/workerd/chat.sh --quick             # 100 and 1,000 sockets, fewer messages
#   bench/workerd/chat.sh --sockets 100,1000  # other room sizes; --floor adds the client's
#                                             # ceiling (an in-memory server of our own)
#
# Installs workerd@1.20261117.1 from npm into bench/workerd/node_modules (gitignored), builds
# the `chat` example and durable-bench in release mode, then runs the comparison.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cargo build --release -p durable-examples --example chat >&2
cargo build --release -p durable-bench >&2

exec "$target/release/durable-bench" --ws "$@" \
    --chat-bin "$target/release/examples/chat" \
    --workerd-bin "$workerd" \
    --workerd-config "$here/chat.capnp"
