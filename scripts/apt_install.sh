#!/usr/bin/env bash
# apt-get install the given Debian packages (root), one caller at a time: the test suite runs on two xdist
# workers, and the SLURM and browser tests each install their packages on first use; two apt-gets at once fail
# at once on apt's lock ("Could not get lock /var/lib/apt/lists/lock", seen in a CI-style run, 2026-12-04).
#   scripts/apt_install.sh PACKAGE...
set -euo pipefail
(($# > 0)) || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
export DEBIAN_FRONTEND=noninteractive
# Our callers wait on this lock; apt's own lock timeout covers an apt-get from outside the project.
exec 9>/var/lock/metasyn-apt.lock
flock 9
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
