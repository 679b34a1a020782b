#!/usr/bin/env bash
# Install the test interpreters this machine lacks, cached at a fixed path so a rerun costs seconds:
#   $ROOT/sid                a Debian sid root (debootstrap) with python3.14 and python3.15 (+ -dev,
#                            -venv) and, where sid has them, their free-threaded (nogil) builds;
#                            venvs /opt/venv-3.14 and /opt/venv-3.15 inside it with the runtime deps.
#                            Sid's glibc is newer than this machine's: they run only under chroot.
#   $ROOT/cpython-3.13t      a free-threaded CPython 3.13 (--disable-gil) built from Debian trixie's
#                            python3.13 source package, runs on the host.
# ROOT is $SPY_MAGIC_PYTHONS, default /opt/spy_magic-pythons. The Debian mirror is the one this
# machine's own apt sources name. Each stage leaves a stamp and is skipped when its stamp is there.
# A stage that fails is reported and skipped; the tests then skip, by name, what is missing.
# Usage: tools/install_pythons.sh [sid|ft|all]   (default all)
set -uo pipefail

ROOT="${SPY_MAGIC_PYTHONS:-/opt/spy_magic-pythons}"
SID="$ROOT/sid"
FT="$ROOT/cpython-3.13t"
STAMP_VERSION=2  # bump when a stage's contents change, to rebuild it
SID_PACKAGES="python3.14,python3.14-dev,python3.14-venv,python3.15,python3.15-dev,python3.15-venv,ca-certificates"
VENV_PACKAGES="ipython ipywidgets psutil matplotlib anywidget ipykernel pytest"
log() { printf '[install_pythons] %s\n' "$*" >&2; }

# The first Debian archive URI of this machine's apt sources (deb822 .sources or one-line lists).
debian_mirror() {
    local uri
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        awk '{for (i = 2; i <= NF; i++) print $i}' | grep -E '/debian/?$' | head -n 1)
    if [ -z "$uri" ]; then
        uri=$(grep -hsE '^deb +' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}' | grep -E '/debian/?$' | head -n 1)
    fi
    printf '%s' "${uri%/}"
}

need_host_packages() {
    local missing=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Mounts do not survive a reboot: (re)mount /proc and /dev in the root on every run. A tool
# running inside the root reads other processes through /proc, as it would in a container.
sid_mounts() {
    mountpoint -q "$SID/proc" || mount -t proc proc "$SID/proc"
    mountpoint -q "$SID/dev" || mount --bind /dev "$SID/dev"
    mkdir -p "$SID/dev/shm"
    mountpoint -q "$SID/dev/shm" || mount -t tmpfs tmpfs "$SID/dev/shm" 2>/dev/null || true
    cp /etc/resolv.conf "$SID/etc/resolv.conf"
    mkdir -p "$SID/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$SID/etc/ssl/certs/ca-certificates.crt"
}

sid_apt() {
    chroot "$SID" env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false "$@"
}

install_sid() {
    local stamp="$SID/.spy_magic-stamp-$STAMP_VERSION" mirror
    if [ ! -e "$stamp" ]; then
        need_host_packages debootstrap || return 1
        mirror=$(debian_mirror)
        [ -n "$mirror" ] || { log "no Debian mirror in this machine's apt sources"; return 1; }
        rm -rf "$SID"
        mkdir -p "$ROOT"
        log "debootstrap sid into $SID"
        debootstrap --variant=minbase --include="$SID_PACKAGES" sid "$SID" "$mirror" \
            >"$ROOT/debootstrap.log" 2>&1 ||
            { log "debootstrap failed (see $ROOT/debootstrap.log)"; tail -n 5 "$ROOT/debootstrap.log" >&2; return 1; }
        sid_mounts
        # Free-threaded builds of 3.14/3.15, where sid packages them (optional: tests skip by name).
        sid_apt update -qq >/dev/null 2>&1
        local p
        for p in python3.14-nogil python3.15-nogil; do
            if chroot "$SID" apt-cache show "$p" >/dev/null 2>&1; then
                log "sid: installing $p"
                sid_apt install -y -qq "$p" >/dev/null 2>&1 || log "sid: $p failed to install"
            else
                log "sid: no $p package (its tests skip by name)"
            fi
        done
        touch "$stamp"
    fi
    sid_mounts
    local v status=0
    for v in 3.14 3.15; do
        [ -e "$SID/opt/venv-$v/.spy_magic-stamp-$STAMP_VERSION" ] && continue
        log "sid: venv /opt/venv-$v with $VENV_PACKAGES"
        rm -rf "$SID/opt/venv-$v"
        if chroot "$SID" "/usr/bin/python$v" -m venv "/opt/venv-$v" &&
            chroot "$SID" "/opt/venv-$v/bin/python" -m pip install -q --upgrade pip &&
            chroot "$SID" "/opt/venv-$v/bin/python" -m pip install -q $VENV_PACKAGES; then
            touch "$SID/opt/venv-$v/.spy_magic-stamp-$STAMP_VERSION"
        else
            log "sid: venv $v incomplete (the tests that need it skip; a rerun tries again)"
            status=1
        fi
    done
    log "sid root ready: $SID"
    return $status
}

install_free_threaded() {
    local stamp="$FT/.spy_magic-stamp-$STAMP_VERSION" work codename
    if [ -e "$stamp" ] && [ -x "$FT/bin/python3.13t" ]; then log "free-threaded 3.13 ready: $FT"; return 0; fi
    need_host_packages dpkg-dev build-essential libssl-dev zlib1g-dev libffi-dev libbz2-dev \
        liblzma-dev libsqlite3-dev libreadline-dev uuid-dev || return 1
    local mirror
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || { log "no Debian mirror in this machine's apt sources"; return 1; }
    work="$ROOT/build-3.13t"
    rm -rf "$work"
    mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
    # A private apt state that knows only trixie's sources: the machine's own apt is untouched.
    cat >"$work/apt/sources.list" <<EOF
deb-src [trusted=yes] $mirror trixie main
EOF
    local aptopts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=-"
        -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
        -o Acquire::Check-Valid-Until=false)
    log "apt-get source python3.13 (trixie)"
    apt-get "${aptopts[@]}" update -qq >/dev/null 2>&1 &&
        (cd "$work/src" && apt-get "${aptopts[@]}" source --download-only -qq python3.13 >/dev/null 2>&1) ||
        { log "could not download trixie's python3.13 source"; return 1; }
    local orig
    orig=$(ls "$work"/src/python3.13_*.orig.tar.* 2>/dev/null | head -n 1)
    [ -n "$orig" ] || { log "no python3.13 orig tarball"; return 1; }
    tar -C "$work/src" -xf "$orig" || return 1
    local srcdir
    srcdir=$(find "$work/src" -maxdepth 1 -type d -name 'Python-3.13*' | head -n 1)
    [ -n "$srcdir" ] || { log "no Python-3.13 source folder"; return 1; }
    log "building free-threaded 3.13 in $srcdir (about 10 minutes on 2 cores)"
    (cd "$srcdir" &&
        ./configure --disable-gil --enable-shared --prefix="$FT" LDFLAGS="-Wl,-rpath,$FT/lib" \
            >"$work/configure.log" 2>&1 &&
        make -j"$(nproc)" >"$work/make.log" 2>&1 &&
        make install >"$work/install.log" 2>&1) ||
        { log "free-threaded build failed (logs in $work)"; return 1; }
    "$FT/bin/python3.13t" -c 'import sys; assert not sys._is_gil_enabled()' ||
        { log "built python3.13t runs with the GIL"; return 1; }
    rm -rf "$work"
    touch "$stamp"
    log "free-threaded 3.13 ready: $FT"
}

what="${1:-all}"
status=0
case "$what" in
sid) install_sid || status=1 ;;
ft) install_free_threaded || status=1 ;;
all)
    install_sid || status=1
    install_free_threaded || status=1
    ;;
*) log "usage: $0 [sid|ft|all]"; exit 2 ;;
esac
exit $status
