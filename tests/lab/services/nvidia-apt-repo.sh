#!/usr/bin/env bash
# Stand-in for NVIDIA's apt repository of the container toolkit (nvidia.github.io/libnvidia-container), which the
# lab cannot reach. Lab test material, shared by all labs on this machine; it is not NVIDIA's repository.
#
# It has the same shape as the real one, so that the gpu_host role's toolkit fix-up runs its real install path
# (keyring, deb822 source, apt) against it:
#   gpgkey                                  the repository's signing key, ASCII-armoured (as NVIDIA serves it)
#   gpgkey-other                            another key, that did not sign the repository (a stale or wrong key)
#   stable/deb/amd64/                       a flat repository: InRelease, Release, Release.gpg, Packages(.gz) and
#                                           nvidia-container-toolkit_$VERSION_amd64.deb
# The package is a stand-in too: it installs the lab's stand-in toolkit programs (tests/lab/host/nvidia/) under the
# names and paths of NVIDIA's package. The key is made here, once, and kept with the repository.
#
#   nvidia-apt-repo.sh build               build the repository (only when its inputs changed)
#   nvidia-apt-repo.sh start [ADDR...]     build, then serve on 127.0.0.1:$NVIDIA_APT_PORT and ADDR:$NVIDIA_APT_PORT
#                                          (the lab networks' gateways; idempotent), not on every interface
#   nvidia-apt-repo.sh stop [ADDR...]      stop serving on ADDR (on every address when none is given)
#   nvidia-apt-repo.sh status
#   nvidia-apt-repo.sh url [--host ADDR]   the base URL (for hosts: --host <lab network gateway>)
#
# Environment: NVIDIA_APT_PORT (18092), NVIDIA_APT_DIR (tests/lab/.state/nvidia-apt).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_DIR=$(cd "$HERE/.." && pwd)
STATE_DIR=$LAB_DIR/.state
PORT=${NVIDIA_APT_PORT:-18092}
ROOT=${NVIDIA_APT_DIR:-$STATE_DIR/nvidia-apt}
PIDFILE=$STATE_DIR/nvidia-apt-$PORT.pid
LOGFILE=$STATE_DIR/nvidia-apt-$PORT.log
SERVICE=nvidia-apt-repo PORT_SETTING=NVIDIA_APT_PORT PROBE_PATH=/gpgkey
# shellcheck source=tests/lab/services/directory-server.sh
source "$HERE/directory-server.sh"
TOOLS=$LAB_DIR/host/nvidia
PACKAGE=nvidia-container-toolkit
VERSION=1.17.8-1
ARCH=amd64

inputs_stamp() {
    {
        echo "$PACKAGE $VERSION $ARCH"
        cat "$TOOLS/nvidia_ctk.py" "$TOOLS/nvidia_container_runtime_hook.py" "$TOOLS/nvidia_container_runtime.py"
        cat "${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-16
}

make_key() {
    local home=$1 name=$2
    gpg --homedir "$home" --batch --quiet --passphrase '' \
        --quick-generate-key "datacrunch-sglang lab $name <lab-$name@localhost.invalid>" ed25519 sign never
}

build_package() {
    local root=$1/package out=$2
    install -d -m 0755 "$root/DEBIAN" "$root/usr/bin"
    install -m 0755 "$TOOLS/nvidia_ctk.py" "$root/usr/bin/nvidia-ctk"
    install -m 0755 "$TOOLS/nvidia_container_runtime_hook.py" "$root/usr/bin/nvidia-container-runtime-hook"
    install -m 0755 "$TOOLS/nvidia_container_runtime.py" "$root/usr/bin/nvidia-container-runtime"
    cat >"$root/DEBIAN/control" <<EOF
Package: $PACKAGE
Version: $VERSION
Architecture: $ARCH
Maintainer: datacrunch.sglang lab <lab@localhost.invalid>
Installed-Size: $(du -sk "$root/usr" | cut -f1)
Depends: python3
Section: utils
Priority: optional
Description: stand-in for the NVIDIA Container Toolkit (datacrunch.sglang lab)
 Installs the lab's stand-in nvidia-ctk, nvidia-container-runtime-hook and
 nvidia-container-runtime under the names of NVIDIA's package. Test material.
EOF
    dpkg-deb --root-owner-group -Zgzip --build "$root" "$out" >/dev/null
}

package_stanza() {
    local deb=$1
    dpkg-deb --field "$deb"
    echo "Filename: ./$(basename "$deb")"
    echo "Size: $(stat -c %s "$deb")"
    echo "MD5sum: $(md5sum "$deb" | cut -d' ' -f1)"
    echo "SHA256: $(sha256sum "$deb" | cut -d' ' -f1)"
    echo
}

release_file() {
    local dir=$1 file
    echo "Origin: datacrunch-sglang-lab"
    echo "Label: NVIDIA container toolkit stand-in"
    echo "Architectures: $ARCH"
    echo "Date: $(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S UTC')"
    echo "MD5Sum:"
    for file in Packages Packages.gz; do
        echo " $(md5sum "$dir/$file" | cut -d' ' -f1) $(stat -c %s "$dir/$file") $file"
    done
    echo "SHA256:"
    for file in Packages Packages.gz; do
        echo " $(sha256sum "$dir/$file" | cut -d' ' -f1) $(stat -c %s "$dir/$file") $file"
    done
}

build() {
    local stamp fresh gnupg flat
    command -v dpkg-deb >/dev/null || die "dpkg-deb is missing: apt-get install dpkg"
    command -v gpg >/dev/null || die "gpg is missing: apt-get install gnupg"
    mkdir -p "$STATE_DIR"
    stamp=$(inputs_stamp)
    if [[ -f $ROOT/.inputs && $(cat "$ROOT/.inputs") == "$stamp" ]]; then
        return 0
    fi
    fresh=$(mktemp -d "$STATE_DIR/nvidia-apt.XXXXXX")
    gnupg=$(mktemp -d "$STATE_DIR/nvidia-apt-gnupg.XXXXXX")
    chmod 0700 "$gnupg"
    flat=$fresh/stable/deb/$ARCH
    mkdir -p "$flat"
    make_key "$gnupg" apt-signing
    gpg --homedir "$gnupg" --batch --armor --export "lab-apt-signing@localhost.invalid" >"$fresh/gpgkey"
    make_key "$gnupg" other
    gpg --homedir "$gnupg" --batch --armor --export "lab-other@localhost.invalid" >"$fresh/gpgkey-other"
    build_package "$(mktemp -d "$gnupg/pkg.XXXXXX")" "$flat/${PACKAGE}_${VERSION}_${ARCH}.deb"
    package_stanza "$flat/${PACKAGE}_${VERSION}_${ARCH}.deb" >"$flat/Packages"
    gzip -9n <"$flat/Packages" >"$flat/Packages.gz"
    release_file "$flat" >"$flat/Release"
    gpg --homedir "$gnupg" --batch --yes --local-user "lab-apt-signing@localhost.invalid" \
        --clearsign --output "$flat/InRelease" "$flat/Release"
    gpg --homedir "$gnupg" --batch --yes --local-user "lab-apt-signing@localhost.invalid" \
        --armor --detach-sign --output "$flat/Release.gpg" "$flat/Release"
    gpgconf --homedir "$gnupg" --kill all 2>/dev/null || true
    rm -rf "$gnupg"
    echo "$stamp" >"$fresh/.inputs"
    chmod -R a+rX "$fresh"
    rm -rf "$ROOT.old"
    if [[ -d $ROOT ]]; then
        mv "$ROOT" "$ROOT.old"
    fi
    mv "$fresh" "$ROOT"
    rm -rf "$ROOT.old"
    echo "nvidia-apt-repo: built $PACKAGE $VERSION in $ROOT" >&2
}

start() {
    build
    serve_start "$ROOT" "$@"
}

# What the service serves, for its status line (called by serve_status).
# shellcheck disable=SC2317
served() {
    echo "$PACKAGE $VERSION"
}

url() {
    echo "http://$(serve_url_host "$@"):$PORT"
}

case ${1:-} in
    build) build ;;
    start)
        shift
        start "$@"
        ;;
    stop)
        shift
        serve_stop "$@"
        ;;
    status) serve_status served ;;
    url)
        shift
        url "$@"
        ;;
    *) die "unknown command '${1:-}': use build, start, stop, status or url [--host ADDR]" ;;
esac
exit $?
