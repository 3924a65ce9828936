#!/bin/sh
# run_if_torch.sh PYTHON ARGS...: run PYTHON ARGS..., or skip (77) when that
# interpreter has no torch.
py=$1
shift
"$py" -c 'import torch' 2>/dev/null || { echo "no torch in $py: skipped"; exit 77; }
exec "$py" "$@"
