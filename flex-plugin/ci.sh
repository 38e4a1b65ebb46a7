#!/bin/sh
# The Flex plugin's checks for CI: install exactly package-lock.json (npm ci; the download
# cache is kept under ~/.npm between runs), type check, unit tests, and the plugin bundle.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --prefer-offline --cache "${NPM_CONFIG_CACHE:-$HOME/.npm}"
npm run typecheck
npm test
npm run build
# The page the browser test (tests/test_flex_plugin_browser.py) mounts the panel on.
npm run test-page
