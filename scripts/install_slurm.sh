#!/usr/bin/env bash
# The Debian packages the SLURM test starts a one-node cluster from (as root, with apt-get); a no-op when
# they are installed. The test itself starts munged, slurmctld and slurmd with a private configuration.
set -euo pipefail
PACKAGES="slurmctld slurmd slurm-client munge"
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && { command -v munged >/dev/null || [ -x /usr/sbin/munged ]; }; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "[slurm] not root or no apt-get: install $PACKAGES yourself to run the SLURM test" >&2
  exit 1
fi
echo "[slurm] installing $PACKAGES" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q $PACKAGES >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $PACKAGES >/dev/null; }
