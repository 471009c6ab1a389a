#!/usr/bin/env bash
# What `npm test` needs besides node_modules, made present on a fresh Debian machine (called by scripts/test.js):
# Debian's Chromium and a CJK font for the editor tests (playwright-core never downloads a browser of its own), and
# a Redis server on 127.0.0.1:6379 for the shared-store tests. Installs only as root with apt-get; otherwise it says
# what is missing and the suite reports the tests that need it.
set -uo pipefail

as_root_apt() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "test prerequisites: please install $* (apt-get install $*); the tests that need it will fail" >&2
    return 1
  fi
}

if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi 'wqy\|noto.*cjk'; then
  as_root_apt chromium fonts-wqy-microhei
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  if command -v redis-server >/dev/null 2>&1 || as_root_apt redis-server; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  fi
fi
exit 0
