#!/bin/sh
# The trainer as the requeue test runs it under Slurm: the first attempt
# trains slowly (40 ms a step), so that Slurm's USR1 (10-40 s into a
# 1-minute limit with --signal=B:USR1@50) comes long before it could finish;
# a restarted attempt trains at full speed, so that it finishes before its
# own USR1 would come.  exec keeps the trainer the batch process.
if [ "${SLURM_RESTART_COUNT:-0}" -eq 0 ]; then ms=40; else ms=0; fi
exec "$CKPTDB_TEST_TRAINER" "$@" --step-sleep-ms "$ms"
