#!/usr/bin/env bash
# The ckptdb command against a real catalog made by the example trainer:
# --help everywhere, ls / show / latest / history / du / pin / unpin / prune
# in text and JSON, cross-checked with sqlite3 and xxh128sum, and bad input
# (missing directory, not a catalog, unknown id, bad option values): one line
# on stderr naming the thing, the documented exit code, nothing changed.
set -euo pipefail
source "$(dirname "$0")/cli_lib.sh" "$@"

d="$work/ckpts"
trainer "$d" --epochs 3 --state-bytes 64K                      # epoch_001..003 (run 1)
trainer "$d" --epochs 6 --state-bytes 64K                      # resumes from epoch_003 (run 2)
SLURM_JOB_ID=4242 SLURM_RESTART_COUNT=2 \
  trainer "$d" --epochs 7 --state-bytes 64K --save-every-steps 5  # step_000065, epoch_007 (run 3)
[ "$(q "$d" "SELECT group_concat(name, ' ') FROM (SELECT name FROM checkpoints WHERE status='complete' ORDER BY id)")" = \
  "epoch_001.pt epoch_002.pt epoch_003.pt epoch_004.pt epoch_005.pt epoch_006.pt step_000065.pt epoch_007.pt" ] \
  || fail "the trainer did not make the expected catalog: $(q "$d" "SELECT id, name, status FROM checkpoints")"
export D="$d"

# --- --help on every command, and the exit code table -------------------------
for sub in ls show latest verify prune pin unpin fsck history du sync; do
  expect 0 "$sub" --help
  out_has "^Usage: ckptdb $sub "
  out_has "--json"
  out_has "^  3  corruption found"
done
expect 0 --help
for code in "0  ok" "1  error" "2  usage" "3  corruption found" "4  nothing found"; do out_has "^  $code"; done
expect 2
one_line_error "subcommand"
expect 2 frobnicate "$d"
one_line_error "frobnicate"

# --- ls -----------------------------------------------------------------------
expect 0 ls "$d"
head -1 "$work/out" | grep -qE '^ID +NAME +KIND +EPOCH +STEP +SIZE +STATUS +AGE$' || fail "ls header: $(head -1 "$work/out")"
[ "$(wc -l < "$work/out")" -eq 9 ] || fail "ls printed $(wc -l < "$work/out") lines, expected a header and 8 rows"
while IFS='|' read -r id name kind epoch step; do
  grep -qE "^ *$id +$name +$kind +$epoch +$step +64\.0 KiB +complete +[0-9]+[smhd]$" "$work/out" \
    || fail "ls has no row '$id $name $kind $epoch $step 64.0 KiB complete AGE'"
  ok
done < <(q "$d" "SELECT id, name, kind, epoch, step FROM checkpoints ORDER BY id")
expect 0 ls --kind step "$d"
[ "$(tail -n +2 "$work/out" | awk '{print $2}')" = "step_000065.pt" ] || fail "ls --kind step"
ok

expect 0 ls --json "$d"
pycheck '
import os, sqlite3
keys = ["id", "name", "path", "kind", "epoch", "step", "size", "checksum", "status", "pinned", "run_id",
        "file_count", "created_at", "committed_at", "deleted_at", "metadata", "layout"]
assert list(d.keys()) == ["dir", "checkpoints"], d.keys()
assert d["dir"] == os.path.realpath(os.environ["D"]), d["dir"]
db = sqlite3.connect("file:" + os.environ["D"] + "/ckptdb.sqlite?mode=ro", uri=True)
rows = db.execute("SELECT id, name, kind, epoch, step, size, checksum, status, pinned, run_id, created_at, committed_at,"
                  " json_extract(metadata, \"$.loss\") FROM checkpoints ORDER BY id").fetchall()
assert len(d["checkpoints"]) == len(rows) == 8
for c, r in zip(d["checkpoints"], rows):
    assert list(c.keys()) == keys, list(c.keys())
    got = (c["id"], c["name"], c["kind"], c["epoch"], c["step"], c["size"], c["checksum"], c["status"],
           int(c["pinned"]), c["run_id"], c["created_at"], c["committed_at"], c["metadata"]["loss"])
    assert got == tuple(r), (got, r)
    assert c["path"] == os.path.join(d["dir"], c["name"]) and c["file_count"] == 1 and c["deleted_at"] is None and c["layout"] == "file"
'
python3 -c 'import json,sys; [print(c["name"], c["checksum"]) for c in json.load(open(sys.argv[1]))["checkpoints"]]' \
  "$work/out" > "$work/sums"
while read -r name sum; do
  [ "$(xxh128sum "$d/$name" | cut -d' ' -f1)" = "$sum" ] || fail "ls --json checksum of $name is not what xxh128sum says"
  ok
done < "$work/sums"

# --- show ---------------------------------------------------------------------
sum3=$(xxh128sum "$d/epoch_003.pt" | cut -d' ' -f1)
expect 0 show "$d" 3
cp "$work/out" "$work/show3"
for re in "^id: +3$" "^name: +epoch_003.pt$" "^path: +$(realpath "$d")/epoch_003.pt$" "^kind: +epoch$" "^epoch: +3$" \
          "^step: +30$" "^size: +65536 \(64\.0 KiB\)$" "^checksum: +$sum3$" "^status: +complete$" "^pinned: +no$" \
          "^run_id: +1$" "^file_count: +1$" "^created_at: +20[0-9-]+T" "^committed_at: +20[0-9-]+T" \
          "^deleted_at: +-$" '^    "loss": ' "^files:$" "^  rank 0  epoch_003.pt  65536 B  $sum3$" \
          "^events:$" "  begun  run 1" "  committed  run 1"; do
  out_has "$re"
done
expect 0 show "$d" epoch_003.pt
diff <(grep -v '^age:' "$work/out") <(grep -v '^age:' "$work/show3") > /dev/null || fail "show by name differs from show by id"
ok
expect 0 show --json "$d" epoch_003.pt
pycheck '
import os, sqlite3
db = sqlite3.connect("file:" + os.environ["D"] + "/ckptdb.sqlite?mode=ro", uri=True)
assert d["id"] == 3 and d["name"] == "epoch_003.pt" and d["status"] == "complete"
assert list(d.keys())[-2:] == ["files", "events"]
f, = d["files"]
assert list(f.keys()) == ["rank", "name", "path", "size", "checksum"], f.keys()
assert (f["rank"], f["name"], f["size"], f["checksum"]) == (0, "epoch_003.pt", 65536, d["checksum"])
ev = db.execute("SELECT id, at, event FROM events WHERE checkpoint_id = 3 ORDER BY id").fetchall()
assert [(e["id"], e["at"], e["event"]) for e in d["events"]] == ev, (d["events"], ev)
assert all(list(e.keys()) == ["id", "at", "run_id", "checkpoint_id", "event", "detail"] for e in d["events"])
assert d["metadata"]["loss"] == db.execute("SELECT json_extract(metadata, \"$.loss\") FROM checkpoints WHERE id = 3").fetchone()[0]
'

# --- latest -------------------------------------------------------------------
expect 0 latest --path "$d"
[ "$(cat "$work/out")" = "$(realpath "$d")/epoch_007.pt" ] || fail "latest --path: $(cat "$work/out")"
ok
resume="$("$ckptdb" latest --path "$d")"
[ -f "$resume" ] && [ "$(basename "$resume")" = epoch_007.pt ] || fail "\$(ckptdb latest --path) is '$resume'"
ok
expect 0 latest "$d"
out_has "^ *8 +epoch_007.pt +epoch +7 +70 +64\.0 KiB +complete +[0-9]+[smhd] +/"
expect 0 latest --json "$d"
pycheck 'assert (d["id"], d["name"], d["kind"], d["epoch"], d["step"], d["status"]) == (8, "epoch_007.pt", "epoch", 7, 70, "complete"), d'
expect 0 latest --kind step --json "$d"
pycheck 'assert d["name"] == "step_000065.pt" and d["step"] == 65, d'
expect 0 latest --no-verify --path "$d"
[ "$(basename "$(cat "$work/out")")" = epoch_007.pt ] || fail "latest --no-verify"
ok
expect 4 latest --kind manual "$d"
one_line_error "manual"

# --- history ------------------------------------------------------------------
expect 0 history "$d"
head -1 "$work/out" | grep -qE '^RUN +HOST +PID +SLURM_JOB +RESTARTS +STARTED +RESUMED_FROM +SAVES +ENDED' || fail "history header"
[ "$(wc -l < "$work/out")" -eq 4 ] || fail "history: expected 3 runs"
out_has "^ *2 .* 3 epoch_003\.pt +3 +clean "
out_has "^ *3 +[^ ]+ +[0-9]+ +4242 +2 .* 6 epoch_006\.pt +2 +clean "
expect 0 history --json "$d"
pycheck '
runs = d["runs"]
assert list(d.keys()) == ["runs"]
keys = ["id", "host", "pid", "started_at", "ended_at", "exit_reason", "slurm_job_id", "slurm_array_job_id",
        "slurm_array_task_id", "slurm_restart_count", "resumed_from", "last_step", "last_saved_step", "saves", "steps_lost"]
assert all(list(r.keys()) == keys for r in runs), runs[0].keys()
assert [r["resumed_from"] for r in runs] == [None, 3, 6], runs
assert [r["saves"] for r in runs] == [3, 3, 2], runs
assert [r["exit_reason"] for r in runs] == ["clean"] * 3, runs
assert [r["slurm_job_id"] for r in runs] == [None, None, "4242"] and runs[2]["slurm_restart_count"] == 2, runs
assert [r["last_saved_step"] for r in runs] == [30, 60, 70] and [r["steps_lost"] for r in runs] == [0, 0, 0], runs
'

# --- du -----------------------------------------------------------------------
expect 0 du "$d"
out_has "^epoch +complete +7 +458752 +448\.0 KiB$"
out_has "^step +complete +1 +65536 +64\.0 KiB$"
out_has "^total +8 +524288 +512\.0 KiB$"
expect 0 du --json "$d"
ondisk=$(find "$d" -maxdepth 1 -type f -name '*.pt' -printf '%s\n' | awk '{s += $1} END {print s}')
pycheck "
assert d['total'] == {'checkpoints': 8, 'bytes': $ondisk}, d['total']
assert {(u['kind'], u['status']): (u['checkpoints'], u['bytes']) for u in d['usage']} == \
    {('epoch', 'complete'): (7, 458752), ('step', 'complete'): (1, 65536)}, d['usage']
"

# --- du, the view disk_usage and the cookbook agree -----------------------------
# One definition of disk usage: a catalog with complete, corrupt, writing (a
# save killed after its seal, as a copy holds it until recovery) and pruned
# rows whose unlink is pending; every byte they count is a byte in the
# directory.
u="$work/usage"
cp -a "$d" "$u"
tmp=.ckptdb-tmp-0123456789abcdef0123456789abcdef
head -c 1000 /dev/zero > "$u/$tmp"
sqlite3 "$u/ckptdb.sqlite" "
  UPDATE checkpoints SET status = 'corrupt' WHERE name = 'epoch_006.pt';
  UPDATE checkpoints SET status = 'pruned', prune_rule = 'keep_last:step=0', deleted_at = NULL
   WHERE name = 'step_000065.pt';
  INSERT INTO checkpoints (name, kind, epoch, step, size, status, created_at) VALUES
    ('epoch_008.pt', 'epoch', 8, 80, 1000, 'writing', '2026-01-01T00:00:00.000Z');
  INSERT INTO files (checkpoint_id, rank, name, temp_name, size, checksum)
    VALUES (last_insert_rowid(), 0, 'epoch_008.pt', '$tmp', 1000, '00000000000000000000000000000000');"
export U="$u" COOKBOOK="$(dirname "$0")/../../sql/cookbook/disk_use_per_kind.sql"
expect 0 du --json "$u"
ondisk=$(find "$u" -maxdepth 1 -type f \( -name '*.pt' -o -name '.ckptdb-tmp-*' \) -printf '%s\n' | awk '{s += $1} END {print s}')
pycheck "
import os, sqlite3
db = sqlite3.connect('file:' + os.environ['U'] + '/ckptdb.sqlite?mode=ro', uri=True)
du = {(r['kind'], r['status']): (r['checkpoints'], r['bytes']) for r in d['usage']}
view = {(k, s): (n, b) for k, s, n, b in db.execute('SELECT kind, status, checkpoints, bytes FROM disk_usage')}
assert du == view == {('epoch', 'complete'): (6, 393216), ('epoch', 'corrupt'): (1, 65536),
                      ('epoch', 'writing'): (1, 1000), ('step', 'pruned'): (1, 65536)}, (du, view)
assert $ondisk == 8 * 65536 + 1000 and d['total'] == {'checkpoints': 9, 'bytes': $ondisk}, (d['total'], $ondisk)
book = {r[0]: r[1:7] for r in db.execute(open(os.environ['COOKBOOK']).read())}
assert book == {'epoch': (8, 6, 1, 1, 0, 459752), 'step': (1, 0, 0, 0, 1, 65536),
                '(all)': (9, 6, 1, 1, 1, $ondisk)}, book
"
expect 0 du "$u"
out_has "^epoch +writing +1 +1000 +1000 B$"
out_has "^step +pruned +1 +65536 +64\.0 KiB$"

# --- bad input: one line, the right code, nothing changed ---------------------
before=$(snapshot "$d")
for sub in ls show latest verify prune pin unpin fsck history du; do
  case $sub in show|pin|unpin) extra=(1) ;; *) extra=() ;; esac
  expect 1 "$sub" "$work/nope" "${extra[@]}"
  one_line_error "'$work/nope' does not exist"
  [ ! -e "$work/nope" ] || fail "ckptdb $sub created $work/nope"
done
mkdir "$work/empty"
expect 3 fsck "$work/empty"
out_has "^catalog_missing "
for sub in ls latest verify prune history du; do
  expect 1 "$sub" "$work/empty"
  one_line_error "$work/empty/ckptdb.sqlite"
  [ -z "$(ls -A "$work/empty")" ] || fail "ckptdb $sub wrote into $work/empty: $(ls -A "$work/empty")"
done
mkdir "$work/junk"; echo "not a database, really not" > "$work/junk/ckptdb.sqlite"
junk=$(snapshot "$work/junk"); cp "$work/junk/ckptdb.sqlite" "$work/junk.orig"
for sub in ls latest verify prune history du; do
  expect 1 "$sub" "$work/junk"
  one_line_error "$work/junk/ckptdb.sqlite"
  cmp -s "$work/junk/ckptdb.sqlite" "$work/junk.orig" || fail "ckptdb $sub changed a foreign ckptdb.sqlite"
done
expect 1 sync "$work/nope" "$work/nope-dst"
one_line_error "'$work/nope' does not exist"
[ ! -e "$work/nope-dst" ] || fail "sync from a missing SRC created DST"
for args in "show 99" "show nope.pt" "pin 99" "unpin nope.pt" "verify 99" "verify nope.pt"; do
  set -- $args
  expect 4 "$1" "$d" "$2"
  one_line_error "$2"
done
expect 2 show "$d" 99999999999999999999999
one_line_error "99999999999999999999999"
for args in "--max-bytes 12Q|--max-bytes" "--max-bytes -5|--max-bytes" "--keep epoch|--keep" "--keep epoch=x|--keep epoch" \
            "--keep =3|--keep" "--keep-default -3|--keep-default" "--every-n-epochs -1|--every-n-epochs" \
            "--every-n-epochs x|--every-n-epochs" "--interval 5y|--interval" "--best loss --best-k 0|--best-k" \
            "--best-mode min|--best-mode" "--best loss --best-mode sideways|--best-mode" "--best a..b|a..b" \
            "--keep epoch=1 --keep epoch=2|epoch" "--frobnicate|--frobnicate"; do
  opts=${args%|*}; names=${args#*|}
  expect 2 prune $opts "$d"
  one_line_error "$names"
  expect 2 prune --dry-run $opts "$d"
done
expect 2 verify "$d" 3 --all
one_line_error "--all"
expect 2 latest --path --json "$d"
one_line_error "--json"
expect 2 ls "$d" extra
one_line_error "extra"
[ "$(snapshot "$d")" = "$before" ] || fail "bad input changed the catalog directory"
ok

# --- pin / unpin --------------------------------------------------------------
expect 0 pin "$d" epoch_001.pt
[ "$(cat "$work/out")" = "pinned 1 epoch_001.pt" ] || fail "pin output: $(cat "$work/out")"
[ "$(q "$d" "SELECT pinned FROM checkpoints WHERE id = 1")" = 1 ] || fail "pin did not pin"
expect 0 pin --json "$d" 2
pycheck 'assert d == {"id": 2, "name": "epoch_002.pt", "pinned": True}, d'
[ "$(q "$d" "SELECT group_concat(id) FROM checkpoints WHERE pinned = 1")" = "1,2" ] || fail "pins: 1,2 expected"
expect 0 ls "$d"
out_has "^ *1 +epoch_001.pt .* complete,pinned "
expect 0 unpin "$d" 2
[ "$(cat "$work/out")" = "unpinned 2 epoch_002.pt" ] || fail "unpin output"
[ "$(q "$d" "SELECT group_concat(id) FROM checkpoints WHERE pinned = 1")" = "1" ] || fail "unpin did not unpin"
ok

# --- prune --------------------------------------------------------------------
before=$(snapshot "$d")
expect 0 prune --dry-run --keep epoch=2 "$d"
head -1 "$work/out" | grep -qE '^ID +NAME +SIZE +RULE$' || fail "prune header"
for n in 2 3 4 5; do out_has "^ *$n +epoch_00$n.pt +64\.0 KiB +keep_last:epoch=2$"; done
out_lacks "epoch_001|epoch_006|epoch_007|step_"
out_has "^would prune 4 checkpoints \(256\.0 KiB\); nothing changed"
expect 0 prune --dry-run --json --keep epoch=2 "$d"
pycheck '
assert (d["dry_run"], d["count"], d["bytes"]) == (True, 4, 4 * 65536), d
assert [(c["id"], c["name"], c["size"], c["rule"]) for c in d["checkpoints"]] == \
    [(i, "epoch_%03d.pt" % i, 65536, "keep_last:epoch=2") for i in (2, 3, 4, 5)], d
'
expect 0 prune --dry-run --json --keep epoch=-1 --keep-default 0 --max-bytes 0.4M "$d"
pycheck '
got = {c["name"]: c["rule"] for c in d["checkpoints"]}
assert list(got) == ["epoch_002.pt", "step_000065.pt"] or list(got) == ["step_000065.pt", "epoch_002.pt"], got
assert got["epoch_002.pt"] == "budget" and got["step_000065.pt"].startswith("keep_last"), got
assert (d["count"], d["bytes"]) == (2, 2 * 65536), d
'
expect 0 prune --dry-run --every-n-epochs 2 --keep epoch=1 "$d"
out_has "epoch_003.pt"; out_has "epoch_005.pt"; out_lacks "epoch_00[2467]"
[ "$(snapshot "$d")" = "$before" ] || fail "prune --dry-run changed something"
ok
expect 0 prune --keep epoch=2 "$d"
out_has "^pruned 4 checkpoints \(256\.0 KiB\)$"
[ "$(q "$d" "SELECT group_concat(id || ':' || status || ':' || prune_rule) FROM checkpoints WHERE status <> 'complete'")" = \
  "2:pruned:keep_last:epoch=2,3:pruned:keep_last:epoch=2,4:pruned:keep_last:epoch=2,5:pruned:keep_last:epoch=2" ] \
  || fail "prune: rows $(q "$d" "SELECT id, status, prune_rule FROM checkpoints")"
for n in 2 3 4 5; do [ ! -e "$d/epoch_00$n.pt" ] || fail "prune left epoch_00$n.pt"; done
[ -e "$d/epoch_001.pt" ] || fail "prune deleted the pinned epoch_001.pt"
ok
expect 0 prune --keep epoch=2 "$d"
out_has "^nothing to prune$"
expect 0 ls "$d"
[ "$(tail -n +2 "$work/out" | awk '{print $2}' | tr '\n' ' ')" = "epoch_001.pt epoch_006.pt step_000065.pt epoch_007.pt " ] \
  || fail "ls after prune: $(cat "$work/out")"
ok
expect 0 ls --all "$d"
[ "$(tail -n +2 "$work/out" | wc -l)" -eq 8 ] || fail "ls --all should list 8"
out_has "^ *3 +epoch_003.pt +epoch +3 +30 +64\.0 KiB +pruned +"
expect 0 ls --all --json "$d"
pycheck 'assert [c["status"] for c in d["checkpoints"]].count("pruned") == 4 and all(c["deleted_at"] for c in d["checkpoints"] if c["status"] == "pruned"), d'
expect 0 du "$d"
out_has "^total +4 +262144 +256\.0 KiB$"

echo "ok: cli basic, $checks checks"
