#!/usr/bin/env bash
# The main job as a new user meets it: a fresh clone of this repository's HEAD, a fresh virtualenv, README's
# main-job command exactly as written (read from README by .ci/readme_command.py), timed with installs included,
# with the peak RSS of the whole command; then both variants loaded with plain sentence-transformers.
# Run it on an otherwise idle machine: the figure is README's "N minutes".
#
#   bash bench/measure_main_job.sh [WORKDIR]     (default: a new temporary folder; the run is left there)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work" && cd "$work"
[ -e clone ] && { echo "$work/clone exists: give another WORKDIR" >&2; exit 2; }
git clone -q "$repo" clone && cd clone
python3 -m venv ../venv && source ../venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
command="$(python3 .ci/readme_command.py main-job)"
echo "commit $(git rev-parse --short HEAD)"
echo "command: $command"
start=$(date +%s)
/usr/bin/time -v bash -euo pipefail -c "$command" > ../main-job.out 2> ../main-job.err
echo "wall (installs included): $(( $(date +%s) - start )) s"
grep -E "Maximum resident|Elapsed" ../main-job.err
sed -n '/^stage /,/^total/p' ../main-job.out
python3 .ci/check_plain_load.py zoo/models --expect small large
