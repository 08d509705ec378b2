#!/usr/bin/env bash
# The Debian package, built and proved installable. Builds the release binary once, makes the man
# pages and shell completions with it (`edm-cast manpage`, `edm-cast completions`), packs them with
# `cargo deb --no-build` into target/debian/edm-cast_*.deb, then installs that .deb with `dpkg -i`
# into a clean root and checks it there:
#   - the root is this machine's own system seen through an overlay (a private mount namespace,
#     changes in a temporary upper layer): the package is not installed in it before, dpkg runs
#     for real with its maintainer scripts (the system user, the units), and nothing on the
#     host changes;
#   - in it: `edm-cast --version` runs from /usr/bin, `man edm-cast-recv` renders, the bash
#     completion loads, `systemd-analyze verify` passes on the installed units, the configs are
#     conffiles, the recv service's command refuses to start (exit 64) while /etc/edm-cast/trusted
#     has no key and, with a key, listens as the edm-cast user without capabilities;
#     `dpkg -r` removes the binary and keeps the configs.
# Prints the sizes of the binary and the .deb. Needs root (mount, chroot) and cargo-deb
# (`cargo install cargo-deb`).
# PROFILE=dev packs the debug build instead (cargo-deb strips it), otherwise the same package,
# installed and checked the same way: .ci/run does that, as a release build from scratch takes
# too long on 2 cores for CI.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "deb.sh: $*" >&2; exit 1; }
step() { echo "== $*"; }
[[ $(id -u) == 0 ]] || die "run as root: the clean root is an overlay mount and a chroot"
command -v cargo-deb >/dev/null || die "cargo-deb is missing: cargo install cargo-deb"
for tool in dpkg-deb unshare chroot setpriv; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

profile=${PROFILE:-release}
step "$profile build"
timeout 3600 cargo build --profile "$profile" --locked --quiet
bin=target/$([[ $profile == dev ]] && echo debug || echo "$profile")/edm-cast

step "man pages and completions (target/dist)"
rm -rf target/dist
mkdir -p target/dist/man
"$bin" manpage target/dist/man
gzip -9n target/dist/man/*.1
"$bin" completions bash > target/dist/edm-cast.bash
"$bin" completions zsh > target/dist/_edm-cast
"$bin" completions fish > target/dist/edm-cast.fish

step "cargo deb"
rm -f target/debian/edm-cast_*.deb
timeout 600 cargo deb --no-build --locked --quiet --profile "$profile" \
    $([[ $profile == release ]] || echo --fast)
deb=$(ls target/debian/edm-cast_*.deb)
echo "binary: $(stat -c %s "$bin") bytes, $(file -b "$bin" | grep -o 'not stripped\|stripped')"
echo "package: $deb, $(stat -c %s "$deb") bytes"
dpkg-deb --field "$deb" Package Version Architecture Depends
dpkg-deb --contents "$deb" | awk '{print $6}'

step "install into a clean root"
tmp=$(mktemp -d /tmp/edm-cast-deb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp"/{upper,work,root}
cp "$deb" "$tmp/upper/edm-cast.deb"
# Everything below runs in its own mount namespace: the overlay and the binds vanish with it.
timeout 300 unshare --mount bash -euo pipefail -s "$tmp" <<'CHROOT'
tmp=$1
root=$tmp/root
mount -t overlay overlay -o "lowerdir=/,upperdir=$tmp/upper,workdir=$tmp/work" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
inroot() { chroot "$root" "$@"; }
fail() { echo "deb.sh: FAILED: $*" >&2; exit 1; }

! inroot dpkg -s edm-cast >/dev/null 2>&1 || fail "edm-cast is installed before dpkg -i"
! inroot test -e /usr/bin/edm-cast || fail "/usr/bin/edm-cast exists before dpkg -i"
inroot dpkg -i /edm-cast.deb
inroot dpkg -s edm-cast | grep -qx 'Status: install ok installed' || fail "not installed"
version=$(inroot /usr/bin/edm-cast --version)
echo "installed: $version"
[[ $version == "edm-cast "* ]] || fail "--version said: $version"

page=$(inroot env MANWIDTH=100 man -P cat edm-cast-recv 2>&1)
grep -q -- '--config' <<<"$page" || fail "man edm-cast-recv: $page"
inroot man -w edm-cast | grep -q '^/usr/share/man/man1/edm-cast.1.gz$' || fail "man -w edm-cast"
echo "man edm-cast-recv: $(wc -l <<<"$page") lines"

complete=$(inroot bash -c 'source /usr/share/bash-completion/completions/edm-cast; complete -p edm-cast')
[[ $complete == *" edm-cast" ]] || fail "completion: $complete"
echo "bash: $complete"

units=$(inroot dpkg -L edm-cast | grep '/systemd/system/edm-cast-.*\.service$')
[[ $(wc -l <<<"$units") == 3 ]] || fail "units installed: $units"
# shellcheck disable=SC2086
inroot systemd-analyze verify $units || fail "systemd-analyze verify"
echo "verified: $(tr '\n' ' ' <<<"$units")"

conffiles=$(inroot dpkg-query -W -f='${Conffiles}' edm-cast | awk '{print $1}' | sort | tr '\n' ' ')
[[ $conffiles == "/etc/edm-cast/recv.toml /etc/edm-cast/serve.toml /etc/edm-cast/trusted /etc/edm-cast/video.toml " ]] \
    || fail "conffiles: $conffiles"
inroot id edm-cast >/dev/null || fail "no edm-cast user"
# (is-enabled exits 1 for "disabled")
for unit in edm-cast-recv edm-cast-serve edm-cast-video; do
    state=$(inroot systemctl is-enabled "$unit.service" 2>&1 || true)
    [[ $state == disabled ]] || fail "$unit is $state before it is configured"
done

# The service's command, as the service user (no capability, as the unit), in the folder its
# StateDirectory= is (systemd makes it at start; it is not running here).
inroot install -d -o edm-cast -g edm-cast -m 0755 /var/lib/edm-cast
as_service() {
    inroot setpriv --reuid=edm-cast --regid=edm-cast --init-groups --bounding-set=-all \
        /usr/bin/edm-cast recv --config /etc/edm-cast/recv.toml --iface lo --timeout 1 "$@"
}
set +e
said=$(as_service 2>&1); code=$?
set -e
[[ $code == 64 && $said == *"/etc/edm-cast/trusted: no key in it"* ]] \
    || fail "recv without a trusted key: exit $code: $said"
echo "without a key: exit 64: $said"
inroot sh -c "/usr/bin/edm-cast keygen /root/teacher.key > /etc/edm-cast/trusted"
set +e
said=$(as_service 2>&1); code=$?
set -e
[[ $code == 1 && $said == *"listening on 239.1.1.1:5007"*"signed by a trusted key"*"no session heard"* ]] \
    || fail "recv with a trusted key: exit $code: $said"
echo "with a key: listens, exit 1 after --timeout 1: $(tail -1 <<<"$said")"
[[ $(inroot stat -c %U:%a /var/lib/edm-cast/inbox) == edm-cast:755 ]] \
    || fail "recv.toml's out: $(inroot stat -c %U:%a /var/lib/edm-cast/inbox)"

inroot dpkg -r edm-cast
! inroot test -e /usr/bin/edm-cast || fail "/usr/bin/edm-cast left after dpkg -r"
inroot test -e /etc/edm-cast/recv.toml || fail "dpkg -r removed the config"
echo "removed; configs kept"
CHROOT
step "ok: $deb builds, installs into a clean root and runs"
