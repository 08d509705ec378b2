#!/usr/bin/env bash
# lanlab.sh - a throw-away "LAN" made of Linux network namespaces, for testing edm-cast.
#
# Topology (everything lives in namespaces this script creates; the root namespace is never touched):
#
#   ns ${LAB}-s  : eth0 10.77.0.1/24  --veth--  port ${LAB}-s   \
#   ns ${LAB}-r1 : eth0 10.77.0.11/24 --veth--  port ${LAB}-r1   >  bridge ${LAB}-br in ns ${LAB}-br
#   ...                                                          |  (mcast_snooping 0: multicast floods)
#   ns ${LAB}-rN : eth0 10.77.0.(10+N)/24 --veth-- port ${LAB}-rN/
#
# - Rate: tbf on the sender's eth0 egress (this kernel has no sch_netem).
# - Loss: nftables, table "netdev lanlab" in ns ${LAB}-br, one chain per receiver-facing bridge port
#   (hook egress), rule `numgen random mod 1000000 < PPM counter drop`: independent random loss per
#   receiver, applied to everything sent toward that receiver (multicast and unicast alike).
#   Fallback (kernel/nft without the netdev egress hook, or LANLAB_LOSS_HOOK=ingress): the same chain on
#   the receiver's own eth0 with hook ingress, inside the receiver's namespace. In that mode the
#   receiver's eth0 rx_bytes still counts the dropped packets (the driver counts before the hook).
# - IPv6 is disabled in every lab namespace so that interface counters carry only our traffic
#   (no DAD/MLD/router solicitations); tso/gso/gro are off on every veth (ethtool) so the counters count
#   wire-sized frames.
# - LANLAB_IPV6=1 at `up` keeps IPv6 on instead (for IPv6 tests; counters then carry MLD and
#   neighbour discovery too): every host gets a ULA, ${V6_PREFIX}::<last IPv4 octet>/64 (the
#   sender fd77::1, receiver i fd77::(10+i), nodad), the kernel's ff00::/8 multicast route on eth0,
#   and the wan host fd78::2 behind the sender's wan0 fd78::1.
#
# - WAN (optional, WAN_RATE set at `up`): ns ${LAB}-w, 10.78.0.2/24, linked to the sender's wan0
#   (10.78.0.1) by a veth pair whose wan-side egress (the download direction) is limited to
#   WAN_RATE with tbf. The sender routes between the LAN and the WAN, so receivers can reach the
#   wan host too (through the sender, over the same limited link).
#
# Run `tools/lanlab.sh` without arguments for usage. Needs root, iproute2, nftables (ethtool optional).

set -Eeuo pipefail

LAB="${LAB:-edm}"
PROG="${0##*/}"
SUBNET_PREFIX="10.77.0"        # /24
SENDER_ADDR="${SUBNET_PREFIX}.1"
WAN_PREFIX="10.78.0"           # /24: ${WAN_PREFIX}.1 the sender's wan0, ${WAN_PREFIX}.2 the wan host
V6_PREFIX="fd77"               # LANLAB_IPV6=1: ${V6_PREFIX}::/64 on the LAN
V6_WAN_PREFIX="fd78"           # LANLAB_IPV6=1: ${V6_WAN_PREFIX}::1 the sender's wan0, ::2 the wan host
NFT_TABLE="lanlab"             # table name inside our own namespaces
T="timeout 20"                 # bound for every single ip/tc/nft/ethtool command

usage() {
    cat >&2 <<EOF
usage: $PROG up N RATE LOSS [LOSS_R1 ... LOSS_RN]
           build a lab with one sender and N receivers (tears down an existing one first).
           RATE: tc rate of the sender's link (e.g. 100mbit, 1gbit, 500kbit) or 'none'.
           LOSS: random loss percentage toward every receiver (e.g. 5, 0.5, 0); optional
           per-receiver values LOSS_R1.. override it for the first receivers.
       $PROG down            remove every namespace of this lab (idempotent)
       $PROG exec HOST CMD...   run CMD inside HOST's namespace (HOST: s, r1..rN, br, w)
       $PROG addr HOST       print HOST's IPv4 address (s, r1..rN)
       $PROG stats           one tab-separated line per host:
                               host tx_bytes tx_packets rx_bytes dropped
                             (eth0 counters; dropped = nft loss counter for receivers, '-' for s)
       $PROG txbytes HOST    print HOST's eth0 tx_bytes
       $PROG check           exit 0 if labs can be built here, else print why and exit 1
environment: LAB=name prefix of namespaces and links (default edm; [A-Za-z0-9_], at most 12 chars)
             WAN_RATE=tc rate (at up): add the wan host w (${WAN_PREFIX}.2) behind the sender
             LANLAB_IPV6=1 (at up): keep IPv6 on, hosts get fd77::1, fd77::(10+i), wan fd78::2
             PORT_RATES="I=RATE ..." (at up): limit receiver rI's switch port to tc rate RATE (a slow PC)
             LANLAB_LOSS_HOOK=egress|ingress (default: egress, falls back to ingress if unsupported)
names: namespaces \${LAB}-br \${LAB}-s \${LAB}-r1..\${LAB}-rN; sender 10.77.0.1, receiver i 10.77.0.(10+i);
       every host's interface is eth0; bridge ports in \${LAB}-br are \${LAB}-s, \${LAB}-r1...
EOF
    exit 2
}

log()  { echo "lanlab: $*" >&2; }
die()  { echo "lanlab: error: $*" >&2; exit 1; }

validate_lab() {
    [[ "$LAB" =~ ^[A-Za-z0-9_]{1,12}$ ]] || { log "LAB='$LAB' must match [A-Za-z0-9_]{1,12}"; exit 2; }
}

ns_br()  { echo "${LAB}-br"; }
ns_s()   { echo "${LAB}-s"; }
ns_r()   { echo "${LAB}-r$1"; }

# All namespace names belonging to this lab (exact patterns only, so LAB=edm never matches edm2-* or
# edmx-s; the -chkNNN ones are left by an interrupted `check`).
our_namespaces() {
    { ip netns list 2>/dev/null || true; } | awk '{print $1}' |
        grep -E "^${LAB}-(br|s|w|r[0-9]+|chk[0-9]+)\$" || true
}

# Receiver indices present, sorted numerically.
receivers() {
    our_namespaces | sed -n "s/^${LAB}-r\([0-9]\+\)\$/\1/p" | sort -n
}

# HOST (s, rI, br) -> namespace name, checking that it exists.
host_ns() {
    local h="$1"
    [[ "$h" =~ ^(s|br|w|r[1-9][0-9]*)$ ]] || { log "bad HOST '$h' (want s, br, w or rI)"; exit 2; }
    local ns="${LAB}-$h"
    [[ -e "/run/netns/$ns" ]] || die "namespace $ns does not exist (is the lab up? LAB=$LAB)"
    echo "$ns"
}

host_addr() {
    local h="$1"
    case "$h" in
        s) echo "$SENDER_ADDR" ;;
        w) echo "${WAN_PREFIX}.2" ;;
        r[1-9]*) [[ "$h" =~ ^r([1-9][0-9]*)$ ]] || { log "bad HOST '$h'"; exit 2; }
                 echo "${SUBNET_PREFIX}.$((10 + BASH_REMATCH[1]))" ;;
        *) log "HOST '$h' has no address (want s or rI)"; exit 2 ;;
    esac
}

# Read one eth0 statistic of a namespace. `ip netns exec` remounts /sys for the namespace.
ns_stat() {
    $T ip netns exec "$1" cat "/sys/class/net/eth0/statistics/$2"
}

# ---------------------------------------------------------------------------------------------- teardown
kill_ns_pids() {
    # Processes still running inside a namespace keep it (and its veths and sockets) alive after
    # `ip netns del`; the lab's processes are ours to end, by pid.
    local ns="$1" pids p
    pids=$({ $T ip netns pids "$ns" 2>/dev/null || true; } | grep -vx "$$" || true)
    [[ -z "$pids" ]] && return 0
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        pids=$({ $T ip netns pids "$ns" 2>/dev/null || true; } | grep -vx "$$" || true)
        [[ -z "$pids" ]] && return 0
        sleep 0.2
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
}

teardown() {
    local ns l
    for ns in $(our_namespaces); do
        kill_ns_pids "$ns"
        $T ip netns del "$ns" 2>/dev/null || true
    done
    # We never create links in the root namespace, but remove any veth there that carries one of our
    # exact names (left by some older version or by hand), never anything else.
    for l in $({ ip -o link show type veth 2>/dev/null || true; } | awk -F': ' '{print $2}' | sed 's/@.*//' |
               grep -E "^${LAB}-(br|s|r[0-9]+)\$" || true); do
        $T ip link del "$l" 2>/dev/null || true
    done
    # A namespace whose name is still mounted (e.g. del failed because of a busy mount) is retried once.
    for ns in $(our_namespaces); do
        sleep 0.2
        $T ip netns del "$ns" 2>/dev/null || log "warning: could not delete namespace $ns"
    done
    return 0
}

# ---------------------------------------------------------------------------------------------- parsing
# tc rate string -> bytes per second (integer). tc's units: bit/bare number, kbit, mbit, gbit, tbit
# (powers of 1000, bits), kibit..tibit (powers of 1024, bits), bps, kbps.. (bytes), kibps.. (bytes).
rate_bytes_per_sec() {
    local r="${1,,}"
    [[ "$r" =~ ^([0-9]+(\.[0-9]+)?)([a-z]*)$ ]] || return 1
    local num="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[3]}" mult
    case "$unit" in
        ""|bit) mult="1/8" ;;
        kbit) mult="1000/8" ;;       mbit) mult="1000000/8" ;;
        gbit) mult="1000000000/8" ;; tbit) mult="1000000000000/8" ;;
        kibit) mult="1024/8" ;;      mibit) mult="1048576/8" ;;
        gibit) mult="1073741824/8" ;;
        bps) mult="1" ;; kbps) mult="1000" ;; mbps) mult="1000000" ;; gbps) mult="1000000000" ;;
        kibps) mult="1024" ;; mibps) mult="1048576" ;; gibps) mult="1073741824" ;;
        *) return 1 ;;
    esac
    awk -v n="$num" -v m="$mult" 'BEGIN { split(m, a, "/"); d = (a[2] == "" ? 1 : a[2]);
        v = n * a[1] / d; if (v < 1) exit 1; printf "%.0f\n", v }'
}

# loss percentage (0..100, optional trailing %) -> parts per million
loss_ppm() {
    local l="${1%\%}"
    [[ "$l" =~ ^[0-9]+(\.[0-9]+)?$ ]] || return 1
    awk -v l="$l" 'BEGIN { if (l > 100) exit 1; printf "%d\n", l * 10000 + 0.5 }'
}

# ---------------------------------------------------------------------------------------------- building
ETHTOOL_WARNED=0
offloads_off() {  # ns ifname
    if ! command -v ethtool >/dev/null 2>&1; then
        if [[ $ETHTOOL_WARNED == 0 ]]; then
            log "warning: ethtool not found (Debian package ethtool): tso/gso/gro stay on, so interface" \
                "counters may count GSO super-frames instead of wire frames"
            ETHTOOL_WARNED=1
        fi
        return 0
    fi
    # Some veth kernels refuse one of the features; the others still get applied one by one.
    local f
    # tx-udp-segmentation too: a veth that accepts UDP GSO passes a sender's 32-datagram batch as
    # one frame, and its counters would miss 31 of the 32 headers.
    for f in tso gso gro tx-udp-segmentation; do
        $T ip netns exec "$1" ethtool -K "$2" "$f" off >/dev/null 2>&1 ||
            log "warning: ethtool -K $2 $f off failed in $1"
    done
}

new_ns() {  # create a namespace with lo up and IPv6 off (unless LANLAB_IPV6=1)
    local ns="$1"
    $T ip netns add "$ns"
    [[ "${LANLAB_IPV6:-0}" == 1 ]] || $T ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
        >/dev/null 2>&1 || log "warning: could not disable IPv6 in $ns"
    $T ip -n "$ns" link set lo up
}

# Can `nft` attach a netdev egress chain to device $2 in namespace $1? (leaves nothing behind)
nft_egress_works() {
    local ns="$1" dev="$2"
    if $T ip netns exec "$ns" nft -f - >/dev/null 2>&1 <<EOF
table netdev lanlab_probe {
    chain c { type filter hook egress device "$dev" priority 0; policy accept; }
}
EOF
    then
        $T ip netns exec "$ns" nft delete table netdev lanlab_probe >/dev/null 2>&1 || true
        return 0
    fi
    $T ip netns exec "$ns" nft delete table netdev lanlab_probe >/dev/null 2>&1 || true
    return 1
}

add_host() {  # kind(s|r) index addr
    local name="$1" addr="$2"
    local ns="${LAB}-$name" port="${LAB}-$name" brns
    brns=$(ns_br)
    new_ns "$ns"
    # Both ends are created directly in their namespaces: nothing ever appears in the root namespace.
    $T ip -n "$brns" link add "$port" type veth peer name eth0 netns "$ns"
    $T ip -n "$brns" link set "$port" master "${LAB}-br"
    offloads_off "$brns" "$port"
    offloads_off "$ns" eth0
    $T ip -n "$brns" link set "$port" up
    $T ip -n "$ns" addr add "$addr/24" brd + dev eth0
    $T ip -n "$ns" link set eth0 up
    $T ip -n "$ns" route add 224.0.0.0/4 dev eth0
    if [[ "${LANLAB_IPV6:-0}" == 1 ]]; then
        $T ip -n "$ns" -6 addr add "${V6_PREFIX}::${addr##*.}/64" dev eth0 nodad
        # The kernel adds ff00::/8 to the local table of every multicast-capable interface; made
        # sure of, since a join without it works and every send fails with "unreachable".
        $T ip -n "$ns" -6 route show table local | grep -q "^multicast ff00::/8 dev eth0" ||
            $T ip -n "$ns" -6 route add multicast ff00::/8 dev eth0 table local
    fi
}

# The wan host behind the sender, on a link limited to RATE in the download direction; the
# sender forwards between it and the N receivers.
add_wan() {  # rate n
    local rate="$1" n="$2" wns sns i wbps
    wbps=$(rate_bytes_per_sec "$rate") || die "bad WAN_RATE '$rate'"
    wns="${LAB}-w"; sns=$(ns_s)
    new_ns "$wns"
    $T ip -n "$sns" link add wan0 type veth peer name eth0 netns "$wns"
    offloads_off "$sns" wan0
    offloads_off "$wns" eth0
    $T ip -n "$sns" addr add "${WAN_PREFIX}.1/24" dev wan0
    $T ip -n "$sns" link set wan0 up
    $T ip -n "$wns" addr add "${WAN_PREFIX}.2/24" dev eth0
    $T ip -n "$wns" link set eth0 up
    $T ip -n "$wns" route add "${SUBNET_PREFIX}.0/24" via "${WAN_PREFIX}.1"
    $T ip netns exec "$sns" sysctl -q -w net.ipv4.ip_forward=1 >/dev/null
    for ((i = 1; i <= n; i++)); do
        $T ip -n "$(ns_r "$i")" route add "${WAN_PREFIX}.0/24" via "$SENDER_ADDR"
    done
    if [[ "${LANLAB_IPV6:-0}" == 1 ]]; then
        $T ip -n "$sns" -6 addr add "${V6_WAN_PREFIX}::1/64" dev wan0 nodad
        $T ip -n "$wns" -6 addr add "${V6_WAN_PREFIX}::2/64" dev eth0 nodad
        $T ip -n "$wns" -6 route add "${V6_PREFIX}::/64" via "${V6_WAN_PREFIX}::1"
        $T ip netns exec "$sns" sysctl -q -w net.ipv6.conf.all.forwarding=1 >/dev/null
        for ((i = 1; i <= n; i++)); do
            $T ip -n "$(ns_r "$i")" -6 route add "${V6_WAN_PREFIX}::/64" via "${V6_PREFIX}::1"
        done
    fi
    local burst limit
    burst=$(( wbps / 250 )); (( burst < 32768 )) && burst=32768
    limit=$(( wbps / 20 )); (( limit < 262144 )) && limit=262144
    $T ip netns exec "$wns" tc qdisc add dev eth0 root tbf rate "$rate" burst "$burst" limit $(( limit + burst ))
    log "wan host ${WAN_PREFIX}.2 behind the sender's wan0 (${WAN_PREFIX}.1), rate ${rate}"
}

UP_DONE=0
on_up_exit() {
    local rc=$?
    if [[ $UP_DONE != 1 ]]; then
        log "up failed (exit $rc); tearing down the partial lab ${LAB}"
        trap - ERR
        set +e
        teardown
        [[ $rc == 0 ]] && rc=1
    fi
    exit "$rc"
}

cmd_up() {
    [[ $# -ge 3 ]] || usage
    local n="$1" rate="$2" loss="$3"; shift 3
    if ! [[ "$n" =~ ^[1-9][0-9]*$ ]] || (( n > 244 )); then log "N must be 1..244"; usage; fi
    (( ${#LAB} + 2 + ${#n} <= 15 )) || { log "LAB='$LAB' too long for N=$n (link names <= 15 chars)"; exit 2; }
    (( $# <= n )) || { log "more per-receiver losses ($#) than receivers ($n)"; usage; }
    local bps=""
    if [[ "$rate" != none ]]; then
        bps=$(rate_bytes_per_sec "$rate") || { log "bad RATE '$rate'"; usage; }
    fi
    local -a ppm=()
    local i l c
    for ((i = 1; i <= n; i++)); do
        l="$loss"
        if (( i <= $# )); then l="${!i}"; fi
        ppm[i]=$(loss_ppm "$l") || { log "bad LOSS '$l' (want a percentage 0..100)"; usage; }
    done
    for c in ip tc nft; do
        command -v "$c" >/dev/null 2>&1 || die "'$c' not found (run: $PROG check)"
    done
    (( EUID == 0 )) || die "must run as root"

    teardown
    UP_DONE=0
    trap on_up_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'log "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

    local brns; brns=$(ns_br)
    new_ns "$brns"
    # STP off (ports forward at once), snooping off (multicast floods to every port, no IGMP needed),
    # no querier (the bridge itself sends no IGMP queries into the lab).
    $T ip -n "$brns" link add name "${LAB}-br" type bridge stp_state 0 forward_delay 0 \
        mcast_snooping 0 mcast_querier 0
    $T ip -n "$brns" link set "${LAB}-br" up

    add_host s "$SENDER_ADDR"
    for ((i = 1; i <= n; i++)); do
        add_host "r$i" "${SUBNET_PREFIX}.$((10 + i))"
    done

    # Rate limit on the sender's egress.
    # burst: tbf can release at most `burst` bytes per timer wakeup; it must cover what the configured
    #   rate accumulates between wakeups (a few ms: CONFIG_HZ=250 -> 4 ms, plus scheduling jitter) or the
    #   achieved rate falls short of RATE, and it must hold several 1500-byte frames. rate/250 (4 ms
    #   worth, 50 kB at 100mbit) with a 32 KiB floor does both while keeping line-rate bursts short.
    # limit: bytes queued in tbf before it drops. Sized from a 50 ms latency budget, but at least
    #   256 KiB so that a UDP socket with the default send buffer (~208 KiB of skb truesize) blocks on
    #   its send buffer before tbf overflows: a sender is paced by back-pressure instead of having
    #   datagrams silently dropped at its own qdisc (a UDP sendto that tbf drops still returns success;
    #   it shows only in /proc/net/snmp Udp SndbufErrors). An application that raises SO_SNDBUF far
    #   above the limit can still overflow it.
    if [[ -n "$bps" ]]; then
        local burst limit
        burst=$(( bps / 250 )); (( burst < 32768 )) && burst=32768
        limit=$(( bps / 20 )); (( limit < 262144 )) && limit=262144
        limit=$(( limit + burst ))
        $T ip netns exec "$(ns_s)" tc qdisc add dev eth0 root tbf rate "$rate" burst "$burst" limit "$limit"
    fi

    if [[ -n "${WAN_RATE:-}" ]]; then
        add_wan "$WAN_RATE" "$n"
    fi

    # Random loss toward each receiver.
    local hook="${LANLAB_LOSS_HOOK:-egress}"
    case "$hook" in egress|ingress) ;; *) die "LANLAB_LOSS_HOOK must be egress or ingress" ;; esac
    if [[ "$hook" == egress ]] && ! nft_egress_works "$brns" "${LAB}-r1"; then
        log "warning: nft netdev egress hook not supported here; using ingress on each receiver's eth0"
        hook=ingress
    fi
    local rules="" rns
    if [[ "$hook" == egress ]]; then
        rules="table netdev $NFT_TABLE {"$'\n'
        for ((i = 1; i <= n; i++)); do
            rules+="  chain r$i { type filter hook egress device \"${LAB}-r$i\" priority 0; policy accept;"
            rules+=" numgen random mod 1000000 < ${ppm[i]} counter drop; }"$'\n'
        done
        rules+="}"$'\n'
        $T ip netns exec "$brns" nft -f - <<<"$rules"
    else
        for ((i = 1; i <= n; i++)); do
            rns=$(ns_r "$i")
            rules="table netdev $NFT_TABLE {"$'\n'
            rules+="  chain r$i { type filter hook ingress device \"eth0\" priority 0; policy accept;"
            rules+=" numgen random mod 1000000 < ${ppm[i]} counter drop; }"$'\n'
            rules+="}"$'\n'
            $T ip netns exec "$rns" nft -f - <<<"$rules"
        done
    fi

    # A slow PC's switch port (PORT_RATES="8=10mbit ..."): tbf on the bridge port toward it, with
    # the same 50 ms buffer rule as the sender's link.
    local spec idx prate pbps pburst plimit
    for spec in ${PORT_RATES:-}; do
        idx=${spec%%=*} prate=${spec#*=}
        [[ "$idx" =~ ^[0-9]+$ ]] && (( idx >= 1 && idx <= n )) || die "PORT_RATES: no receiver r$idx"
        pbps=$(rate_bytes_per_sec "$prate") || die "PORT_RATES: bad rate '$prate'"
        pburst=$(( pbps / 250 )); (( pburst < 32768 )) && pburst=32768
        plimit=$(( pbps / 20 )); (( plimit < 65536 )) && plimit=65536
        $T ip netns exec "$brns" tc qdisc add dev "${LAB}-r$idx" root tbf rate "$prate" \
            burst "$pburst" limit $(( plimit + pburst ))
        log "r$idx's switch port limited to $prate"
    done

    UP_DONE=1
    trap - EXIT INT TERM ERR
    local losses="" uniform=1
    for ((i = 1; i <= n; i++)); do
        losses+=" r$i=$(awk -v p="${ppm[i]}" 'BEGIN{printf "%g", p/10000}')%"
        [[ "${ppm[i]}" == "${ppm[1]}" ]] || uniform=0
    done
    [[ $uniform == 1 ]] && losses=" $(awk -v p="${ppm[1]}" 'BEGIN{printf "%g", p/10000}')% toward each receiver"
    log "lab ${LAB} up: sender ${SENDER_ADDR} (rate ${rate}), $n receivers ${SUBNET_PREFIX}.11..$((10 + n))," \
        "loss hook ${hook}, loss${losses}"
}

# ---------------------------------------------------------------------------------------------- queries
drop_counter() {  # receiver index -> packets dropped so far
    local i="$1" out
    out=$( { $T ip netns exec "$(ns_br)" nft list chain netdev "$NFT_TABLE" "r$i" 2>/dev/null ||
             $T ip netns exec "$(ns_r "$i")" nft list chain netdev "$NFT_TABLE" "r$i" 2>/dev/null; } |
           sed -n 's/.*counter packets \([0-9]\+\) bytes.*/\1/p' | head -n1 ) || true
    echo "${out:--}"
}

cmd_stats() {
    local ns i
    ns=$(host_ns s)
    printf 's\t%s\t%s\t%s\t-\n' "$(ns_stat "$ns" tx_bytes)" "$(ns_stat "$ns" tx_packets)" "$(ns_stat "$ns" rx_bytes)"
    for i in $(receivers); do
        ns=$(ns_r "$i")
        printf 'r%s\t%s\t%s\t%s\t%s\n' "$i" "$(ns_stat "$ns" tx_bytes)" "$(ns_stat "$ns" tx_packets)" \
            "$(ns_stat "$ns" rx_bytes)" "$(drop_counter "$i")"
    done
}

# ---------------------------------------------------------------------------------------------- check
cmd_check() {
    local ok=1 c
    (( EUID == 0 )) || { echo "not root (network namespaces need root)"; ok=0; }
    for c in ip:iproute2 tc:iproute2 nft:nftables timeout:coreutils; do
        command -v "${c%%:*}" >/dev/null 2>&1 || { echo "'${c%%:*}' missing: apt-get install -y ${c#*:}"; ok=0; }
    done
    command -v ethtool >/dev/null 2>&1 ||
        echo "warning: 'ethtool' missing (apt-get install -y ethtool): labs work, but counters may count GSO frames"
    if [[ $ok == 0 ]]; then echo "cannot build labs here"; return 1; fi

    local ns="${LAB}-chk$$"
    trap '$T ip netns del "'"$ns"'" >/dev/null 2>&1 || true' EXIT
    if ! $T ip netns add "$ns" 2>/dev/null || ! $T ip netns exec "$ns" true 2>/dev/null; then
        echo "'ip netns' does not work here (no permission to create network namespaces?)"; return 1
    fi
    if ! $T ip -n "$ns" link add "${LAB}-ca" type veth peer name "${LAB}-cb" 2>/dev/null; then
        echo "cannot create veth pairs (veth module missing?)"; return 1
    fi
    if ! $T ip -n "$ns" link add "${LAB}-cbr" type bridge mcast_snooping 0 mcast_querier 0 2>/dev/null ||
       ! $T ip -n "$ns" link set "${LAB}-cb" master "${LAB}-cbr" 2>/dev/null; then
        echo "cannot create a bridge with mcast_snooping off (bridge module missing?)"; return 1
    fi
    if ! $T ip netns exec "$ns" tc qdisc add dev "${LAB}-ca" root tbf rate 100mbit burst 50000 limit 300000 2>/dev/null; then
        echo "tc qdisc tbf not available (kernel without sch_tbf?)"; return 1
    fi
    local hook=egress
    if ! nft_egress_works "$ns" "${LAB}-cb"; then
        hook=ingress
        if ! $T ip netns exec "$ns" nft -f - >/dev/null 2>&1 <<EOF
table netdev lanlab_probe {
    chain c { type filter hook ingress device "${LAB}-ca" priority 0; policy accept; numgen random mod 1000000 < 1 counter drop; }
}
EOF
        then
            echo "nftables netdev hooks (egress and ingress) not usable (kernel without nf_tables netdev?)"
            return 1
        fi
    fi
    $T ip netns del "$ns" 2>/dev/null || true
    trap - EXIT
    echo "ok: labs can be built here (loss hook: $hook)"
    return 0
}

# ---------------------------------------------------------------------------------------------- main
[[ $# -ge 1 ]] || usage
validate_lab
cmd="$1"; shift
case "$cmd" in
    up|down|check)
        # Serialize lab building/teardown (any LAB): hold a lock on this script file (nothing is created).
        if command -v flock >/dev/null 2>&1; then
            exec 9<"$0"
            flock -w 120 9 || die "timed out waiting for another $PROG up/down/check"
        fi
        ;;
esac
case "$cmd" in
    up)    cmd_up "$@" ;;
    down)  [[ $# -eq 0 ]] || usage; teardown ;;
    exec)  [[ $# -ge 2 ]] || usage; ns=$(host_ns "$1"); shift; exec ip netns exec "$ns" "$@" ;;
    addr)  [[ $# -eq 1 ]] || usage; host_addr "$1" ;;
    stats) [[ $# -eq 0 ]] || usage; cmd_stats ;;
    txbytes) [[ $# -eq 1 ]] || usage; ns=$(host_ns "$1"); [[ "$1" != br ]] || die "br has no eth0"; ns_stat "$ns" tx_bytes ;;
    check) [[ $# -eq 0 ]] || usage; cmd_check ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac
