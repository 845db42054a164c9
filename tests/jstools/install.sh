#!/usr/bin/env bash
# Install the JavaScript guest toolchain the tests use (jco + componentize-js, pinned by package.json
# beside this script) into the user's cache, never into the repo:
#   ${WASITLS_JSTOOLS:-${XDG_CACHE_HOME:-~/.cache}/wasitls/jstools}
# jco needs Node.js >= 20.12; when the system's node is older (Debian 12 ships 18), a Node.js 20 comes
# from the npm registry too, into <that dir>/node, where the tests look for it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${WASITLS_JSTOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/wasitls/jstools}"
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install nodejs npm)" >&2; exit 1; }
done
mkdir -p "$dest"
if ! cmp -s "$here/package.json" "$dest/package.json" || [ ! -e "$dest/node_modules/.bin/jco" ]; then
  echo "installing jco and componentize-js into $dest"
  cp "$here/package.json" "$dest/"
  npm install --prefix "$dest" --no-audit --no-fund --no-package-lock --loglevel=error
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 12) ? 0 : 1)'; then
  if [ ! -x "$dest/node/node_modules/.bin/node" ]; then
    echo "node $(node --version) is too old for jco; installing Node.js 20 into $dest/node"
    npm install --prefix "$dest/node" --no-audit --no-fund --loglevel=error node@20.19.5
  fi
fi
