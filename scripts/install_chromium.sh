#!/usr/bin/env bash
# Headless Chromium for the kedro-viz browser tests (tests/test_viz.py) and for screenshots of the
# pipeline graph: Debian's `chromium` package. Does nothing when a `chromium` is already on PATH.
# Needs root (apt-get). Prints the browser's path.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
    if [[ $EUID -ne 0 ]]; then
        echo "install_chromium: chromium is missing and installing it needs root: sudo $0" >&2
        exit 1
    fi
    "$(dirname "$0")/apt_install.sh" chromium
fi
command -v chromium
