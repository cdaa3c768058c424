# Sourced by run.sh and chat.sh: installs workerd@1.20261117.1 from npm into
# bench/workerd/node_modules (gitignored) if it is not there, and sets `here` (this folder),
# `root` (the repository), `workerd` (its binary) and `target` (cargo's target folder), then
# moves to the repository root.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version=1.20261117.1
workerd="$here/node_modules/@cloudflare/workerd-linux-64/bin/workerd"

if [ ! -x "$workerd" ] || ! grep -q "\"version\": \"$version\"" "$here/node_modules/workerd/package.json"; then
    (cd "$here" && npm install --no-save --no-audit --no-fund "workerd@$version" >&2)
fi
"$workerd" --version >&2

cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
