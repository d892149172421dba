#!/usr/bin/env bash
# Bring up / tear down a real one-node Slurm cluster on 127.0.0.1 for tests.
# See tests/slurm/README.md and /work/shared/spec/slurm.md.
#
#   cluster.sh up DIR      install (if needed) + start munged, slurmctld, slurmd; wait for idle
#   cluster.sh down DIR    stop slurmd, slurmctld, munged (by pid file, never by name)
#   cluster.sh status DIR  print sinfo output, or "down"
#
# Exit codes: 0 ok, 77 skipped (not root / no apt-get or STUFFED_NO_APT set and packages missing),
#             1 failure, 2 usage, 3 status: down.
# Environment: SLURM_UP_TIMEOUT (s, default 30), SLURM_DOWN_TIMEOUT (s, default 15).
set -uo pipefail

PROG=${0##*/}
UP_TIMEOUT=${SLURM_UP_TIMEOUT:-30}
DOWN_TIMEOUT=${SLURM_DOWN_TIMEOUT:-15}
SLURM_CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
MUNGE_PID=/run/munge/munged.pid
MUNGE_KEY=/etc/munge/munge.key
MARKER=.stuffed-slurm-cluster
LOCK=/run/lock/stuffed-slurm-cluster.lock
PACKAGES=(slurmctld slurmd slurm-client munge)
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
skip() { printf 'SKIP: %s\n' "$*"; exit 77; }
usage() { echo "usage: $PROG up|down|status DIR" >&2; exit 2; }

# ---------------------------------------------------------------- processes

# running PID: the process exists and is not a zombie.
running() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    [[ ${st:0:1} != Z && ${st:0:1} != X ]]
}

# pid_alive PID COMM: the process runs and its comm is COMM (guards against pid reuse).
pid_alive() {
    local pid=$1 comm=$2 c
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    c=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $c == "$comm" ]] && running "$pid"
}

read_pid() { # read_pid FILE -> pid on stdout (empty if none)
    local f=$1 p=""
    [[ -r $f ]] && read -r p <"$f" 2>/dev/null
    [[ $p =~ ^[0-9]+$ ]] && echo "$p"
    return 0
}

# stop_pids COMM=PID...: SIGTERM the live ones (all at once), wait (bounded),
# then SIGKILL what is left. A pid counts only while /proc/PID/comm is COMM.
stop_pids() {
    local item live=() deadline still
    for item in $(printf '%s\n' "$@" | sort -u); do
        pid_alive "${item#*=}" "${item%%=*}" && live+=("$item")
    done
    ((${#live[@]})) || return 0
    log "stopping ${live[*]}"
    for item in "${live[@]}"; do kill -TERM "${item#*=}" 2>/dev/null; done
    deadline=$((SECONDS + DOWN_TIMEOUT))
    while :; do
        still=()
        for item in "${live[@]}"; do pid_alive "${item#*=}" "${item%%=*}" && still+=("$item"); done
        ((${#still[@]})) || return 0
        ((SECONDS < deadline)) || break
        sleep 0.1
    done
    log "${still[*]} did not exit in ${DOWN_TIMEOUT}s, sending SIGKILL"
    for item in "${still[@]}"; do kill -KILL "${item#*=}" 2>/dev/null; done
    deadline=$((SECONDS + 5))
    while :; do
        live=("${still[@]}"); still=()
        for item in "${live[@]}"; do pid_alive "${item#*=}" "${item%%=*}" && still+=("$item"); done
        ((${#still[@]})) || return 0
        ((SECONDS < deadline)) || break
        sleep 0.1
    done
    log "WARNING: ${still[*]} still alive"
    return 1
}

# descendants PID...: all descendants of the given pids (by ppid), one per line.
descendants() {
    ps -e -o pid=,ppid= | awk -v roots="$*" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
        { parent[$1] = $2; pids[++m] = $1 }
        END {
            do {
                changed = 0
                for (i = 1; i <= m; i++) {
                    p = pids[i]
                    if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; out[p] = 1; changed = 1 }
                }
            } while (changed)
            for (p in out) print p
        }'
}

# stop_steps SPOOLDIR...: kill the slurmstepd processes (and the job processes
# under them) of a cluster whose slurmd spool dir is SPOOLDIR. slurmstepd
# daemonizes into its own session, so killing slurmd does not stop it; we find
# it by the unix socket it listens on in the spool dir (never by name).
stop_steps() {
    local spool inodes="" pids="" p fd l
    for spool in "$@"; do
        [[ -n $spool && -d $spool ]] || continue
        inodes+=" $(awk -v d="$spool/" 'index($NF, d) == 1 {print $7}' /proc/net/unix 2>/dev/null)"
    done
    inodes=$(echo $inodes)
    [[ -n $inodes ]] || return 0
    for fd in /proc/[0-9]*/fd/*; do
        l=$(readlink "$fd" 2>/dev/null) || continue
        [[ $l == socket:\[*\] ]] || continue
        l=${l#socket:[}; l=${l%]}
        case " $inodes " in *" $l "*) p=${fd#/proc/}; pids+=" ${p%%/*}" ;; esac
    done
    pids=$(printf '%s\n' $pids | sort -un)
    [[ -n $pids ]] || return 0
    pids="$pids $(descendants $pids)"
    log "killing leftover job steps: $(echo $pids)"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null
    local deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
        local alive=0
        for p in $pids; do running "$p" && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    return 0
}

# Config value KEY from a slurm.conf (case-insensitive key).
conf_value() {
    local file=$1 key=$2
    [[ -r $file ]] || return 0
    awk -F= -v k="$(tr 'A-Z' 'a-z' <<<"$key")" \
        'tolower($1) == k {sub(/^[^=]*=/, ""); sub(/[ \t#].*$/, ""); print; exit}' "$file"
}

# down_slurm DIR: stop the slurm daemons whose pid files are in DIR (and the
# ones /etc/slurm/slurm.conf points to, in case it was a different DIR).
down_slurm() {
    local dir=$1 pids=() f p
    for f in "$dir/slurmd.pid" "$dir/run/slurmd.launch.pid" \
             "$(conf_value "$SLURM_CONF" SlurmdPidFile)"; do
        [[ -n $f ]] || continue
        p=$(read_pid "$f"); [[ -n $p ]] && pids+=("slurmd=$p")
    done
    for f in "$dir/slurmctld.pid" "$dir/run/slurmctld.launch.pid" \
             "$(conf_value "$SLURM_CONF" SlurmctldPidFile)"; do
        [[ -n $f ]] || continue
        p=$(read_pid "$f"); [[ -n $p ]] && pids+=("slurmctld=$p")
    done
    # Both at once: slurmctld alone hangs ~3 s on shutdown trying to reach a dead slurmd.
    stop_pids "${pids[@]}" || true
    stop_steps "$dir/spool" "$(conf_value "$SLURM_CONF" SlurmdSpoolDir)"
    rm -f "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/run/"*.launch.pid 2>/dev/null
    return 0
}

down_munge() {
    local p
    p=$(read_pid "$MUNGE_PID")
    [[ -n $p ]] || return 0
    stop_pids "munged=$p" || true
    pid_alive "$p" munged || rm -f "$MUNGE_PID"
    return 0
}

# ---------------------------------------------------------------- up steps

pkg_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || skip "apt-get not found and packages missing: ${missing[*]}"
    [[ -z ${STUFFED_NO_APT:-} ]] || skip "STUFFED_NO_APT is set and packages missing: ${missing[*]}"
    log "installing ${missing[*]} (a real one-node Slurm cluster for tests/slurm_e2e.rs; then writes $SLURM_CONF, $GRES_CONF, $MUNGE_KEY); apt output: /tmp/stuffed-slurm-apt.log"
    export DEBIAN_FRONTEND=noninteractive
    local opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef
                -o Dpkg::Options::=--force-confold)
    if ! apt-get install "${opts[@]}" "${missing[@]}" >/tmp/stuffed-slurm-apt.log 2>&1; then
        log "apt-get install failed without update; running apt-get update"
        apt-get update -q >>/tmp/stuffed-slurm-apt.log 2>&1 ||
            { tail -n 20 /tmp/stuffed-slurm-apt.log >&2; die "apt-get update failed"; }
        apt-get install "${opts[@]}" "${missing[@]}" >>/tmp/stuffed-slurm-apt.log 2>&1 ||
            { tail -n 20 /tmp/stuffed-slurm-apt.log >&2; die "apt-get install ${missing[*]} failed"; }
    fi
    for p in "${PACKAGES[@]}"; do pkg_installed "$p" || die "package $p still not installed"; done
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    id munge >/dev/null 2>&1 || die "user munge missing (munge package broken?)"
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating $MUNGE_KEY"
        install -d -o munge -g munge -m 0700 /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY" || die "mungekey failed"
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge "$MUNGE_KEY" && chmod 0400 "$MUNGE_KEY"
    install -d -o munge -g munge -m 0755 /run/munge
    if munge_works; then return 0; fi
    down_munge # a stale/broken munged from the pid file
    local try
    for try in 1 2; do
        if ((try == 1)); then
            runuser -u munge -- /usr/sbin/munged 9>&-
        else # stale socket/lock left by a killed munged
            runuser -u munge -- /usr/sbin/munged --force 9>&-
        fi
        local deadline=$((SECONDS + 10))
        while ((SECONDS < deadline)); do
            munge_works && return 0
            sleep 0.1
        done
    done
    tail -n 20 /var/log/munge/munged.log >&2 2>/dev/null
    die "munged does not work (munge -n | unmunge fails)"
}

validate_dir() {
    local dir=$1
    # Refuse obviously wrong targets; the marker check below protects the rest.
    case $dir in
        /*/*) ;;
        *) die "refusing to use $dir as cluster dir (need at least two path components)" ;;
    esac
    case $dir in
        /etc/* | /usr/* | /bin/* | /sbin/* | /lib*/* | /boot/* | /proc/* | /sys/* | /dev/* | /run/munge*)
            die "refusing to use $dir as cluster dir" ;;
    esac
    if [[ -e $dir ]]; then
        [[ -d $dir ]] || die "$dir exists and is not a directory"
        if [[ ! -e $dir/$MARKER ]] && [[ -n $(ls -A "$dir" 2>/dev/null) ]]; then
            die "$dir is not empty and was not created by $PROG (no $MARKER); refusing to wipe it"
        fi
    fi
}

prepare_dir() {
    local dir=$1
    if [[ -e $dir ]]; then
        [[ -d $dir ]] || die "$dir exists and is not a directory"
        if [[ ! -e $dir/$MARKER ]] && [[ -n $(ls -A "$dir" 2>/dev/null) ]]; then
            die "$dir is not empty and was not created by $PROG (no $MARKER); refusing to wipe it"
        fi
        rm -rf -- "$dir"
    fi
    mkdir -p "$dir"/{state,spool,log,run} || die "cannot create $dir"
    chmod 0755 "$dir"
    : >"$dir/$MARKER"
}

write_conf() {
    local dir=$1 host=$2 cpus
    cpus=$(nproc)
    mkdir -p /etc/slurm
    cat >"$SLURM_CONF.tmp" <<EOF
# Written by tests/slurm/cluster.sh for a one-node test cluster in $dir
ClusterName=ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    mv -f "$SLURM_CONF.tmp" "$SLURM_CONF"
    printf '%s\n' "# Written by tests/slurm/cluster.sh: two fake GPUs" \
        "Name=gpu File=/dev/null" "Name=gpu File=/dev/zero" >"$GRES_CONF"
    chmod 0644 "$SLURM_CONF" "$GRES_CONF"
}

dump_logs() {
    local dir=$1 name f
    for name in slurmctld slurmd; do
        f=$dir/log/$name.log
        [[ -s $f ]] || f=$dir/log/$name.out # early errors (bad config) only go to stderr
        [[ -s $f ]] || continue
        echo "---- last lines of $f" >&2
        tail -n 25 "$f" >&2
    done
}

# start_daemon NAME DIR: setsid NAME -D in the background; pid -> DIR/run/NAME.launch.pid
start_daemon() {
    local name=$1 dir=$2 pid
    setsid "/usr/sbin/$name" -D </dev/null >>"$dir/log/$name.out" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$dir/run/$name.launch.pid"
    disown "$pid" 2>/dev/null || true
}

cmd_up() {
    local dir=$1 host t0=${EPOCHREALTIME:-$SECONDS}
    [[ $(id -u) == 0 ]] || skip "not root"
    command -v apt-get >/dev/null || command -v slurmctld >/dev/null ||
        skip "apt-get not found"
    validate_dir "$dir"
    mkdir -p "${LOCK%/*}" && exec 9>"$LOCK" && flock -w 120 9 || die "cannot lock $LOCK"

    # A previous cluster (this DIR, or whatever /etc/slurm/slurm.conf points to).
    down_slurm "$dir"

    install_packages
    start_munge
    prepare_dir "$dir"
    host=$(hostname -s) || die "hostname -s failed"
    write_conf "$dir" "$host"

    start_daemon slurmctld "$dir"
    start_daemon slurmd "$dir"

    local deadline=$((SECONDS + UP_TIMEOUT)) state="" cpid dpid
    cpid=$(read_pid "$dir/run/slurmctld.launch.pid")
    dpid=$(read_pid "$dir/run/slurmd.launch.pid")
    while :; do
        state=$(timeout 5 sinfo -h -o %t 2>/dev/null | head -n 1)
        [[ $state == idle ]] && break
        if ! pid_alive "$cpid" slurmctld || ! pid_alive "$dpid" slurmd; then
            sleep 0.5 # let it finish writing its log
            dump_logs "$dir"
            local gone=""
            pid_alive "$cpid" slurmctld || gone+=" slurmctld"
            pid_alive "$dpid" slurmd || gone+=" slurmd"
            down_slurm "$dir"
            die "${gone# } exited during start-up (node state '${state:-none}'); see $dir/log"
        fi
        if ((SECONDS >= deadline)); then
            dump_logs "$dir"
            timeout 5 sinfo -N -l >&2 2>/dev/null
            down_slurm "$dir"
            die "node did not become idle within ${UP_TIMEOUT}s (last state '${state:-none}')"
        fi
        sleep 0.2
    done
    echo "READY slurmctld=$cpid slurmd=$dpid munged=$(read_pid "$MUNGE_PID") dir=$dir seconds=$(awk -v a="$t0" -v b="${EPOCHREALTIME:-$SECONDS}" 'BEGIN {printf "%.1f", b - a}')"
}

cmd_down() {
    local dir=$1
    [[ $(id -u) == 0 ]] || skip "not root"
    mkdir -p "${LOCK%/*}" && exec 9>"$LOCK" && flock -w 120 9 || die "cannot lock $LOCK"
    down_slurm "$dir"
    down_munge
    echo "DOWN"
}

cmd_status() {
    local dir=$1 cpid
    cpid=$(read_pid "$dir/slurmctld.pid")
    [[ -n $cpid ]] || cpid=$(read_pid "$dir/run/slurmctld.launch.pid")
    if pid_alive "$cpid" slurmctld && command -v sinfo >/dev/null &&
        timeout 10 sinfo 2>/dev/null; then
        return 0
    fi
    echo "down"
    exit 3
}

[[ $# -eq 2 && -n $2 ]] || usage
DIR=$(realpath -m -- "$2") || usage
case $1 in
    up) cmd_up "$DIR" ;;
    down) cmd_down "$DIR" ;;
    status) cmd_status "$DIR" ;;
    *) usage ;;
esac
