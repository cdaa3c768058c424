#!/usr/bin/env bash
# The seed's HTTP counter, ours against workerd, side by side on 127.0.0.1 (on-disk storage
# for both, the same load generator: durable-bench --http). Ours also runs in two processes
# (an object server and a front end calling it over loopback), loaded through the front end.
#
#   bench/workerd/run.sh            # 3 rounds of 10 s per case, medians
#   bench/workerd/run.sh --quick    # one round of 3 s per case
#
# Installs workerd@1.20261117.1 from npm into bench/workerd/node_modules (gitignored), builds
# the `counter` example and durable-bench in release mode, then runs the comparison.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cargo build --release -p durable-examples --example counter >&2
cargo build --release -p durable-bench >&2

exec "$target/release/durable-bench" --http "$@" \
    --counter-bin "$target/release/examples/counter" \
    --workerd-bin "$workerd" \
    --workerd-config "$here/config.capnp"
