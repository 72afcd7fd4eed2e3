#!/usr/bin/env bash
# Installs Debian's chromium + chromedriver for the demo page's browser test, when they are missing.
# Without root/sudo or apt the test is skipped with the reason; nothing else depends on the browser.
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: no apt-get; the browser test will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "install_browser: not root and no passwordless sudo; the browser test will be skipped" >&2
    exit 0
  fi
fi
echo "install_browser: installing chromium and chromium-driver (apt)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1 || true
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
  || echo "install_browser: apt-get install failed; the browser test will be skipped" >&2
exit 0
