#!/usr/bin/env bash
# The wheels the lent GPU machine lacks for bench/gpu_check.py, downloaded into bench/out/wheels (ignored by git,
# carried with `carry: ["bench/out/wheels"]`), with the requirement lines the machine installs them by, and a check
# that they and the repository together stay within the 64 MiB a device call carries.
#
# The machine (/work/.library/device/KINDS.md, read 2026-11-17): Python 3.12, torch 2.11.0, transformers 5.17.0,
# sentence-transformers 6.0.1, huggingface-hub 1.33.0, tokenizers 0.23.2, accelerate 1.15.0, safetensors 0.8.0,
# numpy 2.5.2, and peft, pyarrow, pandas, fsspec, xxhash, jinja2, matplotlib, pyyaml, tqdm of versions not recorded;
# no datasets, dill, multiprocess, pydantic, gguf, mteb. Against pyproject.toml's dependencies that leaves:
#   sentence-transformers  6.0.1 < 6.2                  carried: 6.3.0, the version st-prune is tested with here
#   datasets               missing                       carried: 5.0.1 (its pyarrow floor is 21, not 5.2's 24, and it
#                                                         accepts huggingface-hub 1.x; --tiny passes with it), and its
#                                                         missing dill and multiprocess
#   pydantic               missing                       carried with pydantic-core, annotated-types, typing-inspection
#                                                         and typing-extensions >= 4.16, which it needs
#   gguf                   missing                       carried (only GGUF bases import it)
#   peft                   version not recorded          carried, installed only if the machine's is below 0.21
#   mteb                   missing                       NOT carried: gpu_check never evaluates, and importing mteb needs
#                                                         polars' 54 MB runtime, beyond the 64 MiB of a call
# pip installs a line's wheel only where the machine's own version does not already satisfy it (the one line to run
# there is in bench/README.md). Usage: bash bench/gpu_carry.sh [DEST]
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-bench/out/wheels}
PYTHON=${PYTHON:-python3}
LIMIT=$((64 * 1024 * 1024))

# wheel to download | requirement line the machine installs it for (pyproject's floor, or the need of its dependent)
ENTRIES=(
  "sentence-transformers==6.3.0|sentence-transformers>=6.2,<7"
  "peft==0.21.2|peft>=0.21"
  "datasets==5.0.1|datasets>=3.0"
  "dill==0.4.1|dill>=0.3.0,<0.4.2"
  "multiprocess==0.70.19|multiprocess<0.70.20"
  "pydantic==2.14.4|pydantic>=2.11"
  "pydantic-core==2.50.5|pydantic-core==2.50.5"
  "annotated-types==0.8.0|annotated-types>=0.6.0"
  "typing-inspection==0.4.5|typing-inspection>=0.4.4"
  "typing-extensions==4.16.0|typing-extensions>=4.16.0"
  "gguf==0.19.0|gguf>=0.10"
)

pins=() requirements=()
for entry in "${ENTRIES[@]}"; do
  pins+=("${entry%%|*}")
  requirements+=("${entry#*|}")
done

rm -rf "$DEST"
mkdir -p "$DEST"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --dest "$DEST" "${pins[@]}"
printf '%s\n' "${requirements[@]}" > "$DEST/requirements.txt"

# What a device call carries: the repository's tracked and untracked-but-not-ignored files, plus this folder.
repository=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null \
  | awk '{total += $1} END {print total + 0}')
wheels=$(du -sb "$DEST" | cut -f1)
total=$((repository + wheels))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "gpu_carry: ${#pins[@]} wheels in $DEST: $(mib "$wheels"); repository $(mib "$repository"); carried $(mib "$total") of 64 MiB"
if [ "$total" -gt "$LIMIT" ]; then
  echo "gpu_carry: error: $(mib "$total") exceeds the 64 MiB a device call carries; carry fewer wheels" >&2
  exit 1
fi
