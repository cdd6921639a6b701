#!/bin/sh
# Builds the steward-agent and steward-collector Debian packages from binaries
# already built (it never runs cargo), with `dpkg-deb --build`. Everything a
# package holds besides the binary is a real file in the source tree:
# deploy/debian/PACKAGE/{control,conffiles,postinst,prerm,postrm,lintian-overrides},
# deploy/systemd/PACKAGE.service, deploy/*.toml (the examples) and
# deploy/debian/copyright.
#
#   cargo build --release -p steward-agent -p steward-collector -p steward-ctl
#   deploy/debian/build-deb.sh                      # both, into target/debian/
#   deploy/debian/build-deb.sh --bin-dir target/debug --out-dir /tmp/debs steward-agent
#
# Needs dpkg-deb (Debian, Ubuntu) and gzip. See docs/packaging.md.
set -eu

usage() {
    cat <<'USAGE'
usage: build-deb.sh [--bin-dir DIR] [--out-dir DIR] [--version VERSION]
                    [--arch ARCH] [--maintainer "NAME <EMAIL>"]
                    [--compression xz|gzip|none] [PACKAGE...]

PACKAGE is steward-agent or steward-collector (default: both).
  --bin-dir DIR     where the built binaries are (default: target/release)
  --out-dir DIR     where the .deb files go (default: target/debian)
  --version V       package version (default: the workspace's, from Cargo.toml)
  --arch ARCH       Debian architecture (default: dpkg --print-architecture)
  --maintainer M    the Maintainer field (default: $DEBFULLNAME <$DEBEMAIL>)
  --compression C   xz (default; smallest), gzip or none (fastest, for tests)
USAGE
}

die() {
    echo "build-deb.sh: $*" >&2
    exit 2
}

deploy=$(cd "$(dirname "$0")/.." && pwd)
source_root=$(dirname "$deploy")
bin_dir=$source_root/target/release
out_dir=$source_root/target/debian
version=
arch=
maintainer="${DEBFULLNAME:-Steward maintainers} <${DEBEMAIL:-steward@example.org}>"
compression=xz
packages=

while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; bin_dir=$2; shift 2 ;;
        --out-dir) [ $# -ge 2 ] || die "--out-dir needs a value"; out_dir=$2; shift 2 ;;
        --version) [ $# -ge 2 ] || die "--version needs a value"; version=$2; shift 2 ;;
        --arch) [ $# -ge 2 ] || die "--arch needs a value"; arch=$2; shift 2 ;;
        --maintainer) [ $# -ge 2 ] || die "--maintainer needs a value"; maintainer=$2; shift 2 ;;
        --compression) [ $# -ge 2 ] || die "--compression needs a value"; compression=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        steward-agent|steward-collector) packages="$packages $1"; shift ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[ -n "$packages" ] || packages="steward-agent steward-collector"
case "$compression" in
    xz|gzip|none) ;;
    *) die "--compression must be xz, gzip or none, not $compression" ;;
esac

command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (install the dpkg package)"
if [ -z "$version" ]; then
    # [workspace.package] version = "X.Y.Z" in the root Cargo.toml.
    version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' \
        "$source_root/Cargo.toml")
    [ -n "$version" ] || die "cannot read the version from $source_root/Cargo.toml"
fi
if [ -z "$arch" ]; then
    arch=$(dpkg --print-architecture 2>/dev/null) || die "pass --arch (dpkg not found)"
fi
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)

# The example configurations each package ships, as "source destination".
examples() {
    case "$1" in
        steward-agent)
            echo "agent.toml etc/steward/agent.toml.example"
            ;;
        steward-collector)
            echo "collector.toml etc/steward/collector.toml.example"
            echo "collector-full.toml etc/steward/collector-full.toml.example"
            echo "default-rules.toml etc/steward/default-rules.toml.example"
            ;;
    esac
}

# Further binaries a package ships beside its own: the collector package
# carries the command-line client, which operators run on the same host.
companions() {
    case "$1" in
        steward-collector) echo "stewardctl" ;;
    esac
}

build() {
    package=$1
    binary=$bin_dir/$package
    [ -x "$binary" ] || die "$binary not found: build it first (cargo build --release -p $package)"
    for companion in $(companions "$package"); do
        [ -x "$bin_dir/$companion" ] ||
            die "$bin_dir/$companion not found: build it first (cargo build --release -p steward-ctl)"
    done
    staging=$(mktemp -d)
    # The staging tree is removed however this function ends.
    trap 'rm -rf "$staging"' EXIT
    root=$staging/root
    control=$deploy/debian/$package

    install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
        "$root/etc/steward" "$root/usr/share/doc/$package" "$root/usr/share/lintian/overrides"
    install -m 0755 "$binary" "$root/usr/bin/$package"
    for companion in $(companions "$package"); do
        install -m 0755 "$bin_dir/$companion" "$root/usr/bin/$companion"
    done
    install -m 0644 "$deploy/systemd/$package.service" "$root/lib/systemd/system/"
    examples "$package" | while read -r source destination; do
        install -m 0644 "$deploy/$source" "$root/$destination"
    done
    install -m 0644 "$deploy/debian/copyright" "$root/usr/share/doc/$package/copyright"
    install -m 0644 "$control/lintian-overrides" "$root/usr/share/lintian/overrides/$package"
    # A native package (no Debian revision): changelog.gz, not changelog.Debian.gz.
    printf '%s (%s) unstable; urgency=medium\n\n  * Built from the Steward source tree.\n\n -- %s  %s\n' \
        "$package" "$version" "$maintainer" "$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")" |
        gzip -9n >"$root/usr/share/doc/$package/changelog.gz"
    chmod 0644 "$root/usr/share/doc/$package/changelog.gz"

    install -m 0644 "$control/conffiles" "$root/DEBIAN/conffiles"
    for script in postinst prerm postrm; do
        install -m 0755 "$control/$script" "$root/DEBIAN/$script"
    done
    (cd "$root" && find usr lib -type f -exec md5sum {} + | sort -k 2) >"$root/DEBIAN/md5sums"
    chmod 0644 "$root/DEBIAN/md5sums"
    installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
    sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" \
        -e "s|@MAINTAINER@|$maintainer|" -e "s/@INSTALLED_SIZE@/$installed_size/" \
        "$control/control" >"$root/DEBIAN/control"
    chmod 0644 "$root/DEBIAN/control"

    deb=$out_dir/${package}_${version}_${arch}.deb
    dpkg-deb --root-owner-group "-Z$compression" --build "$root" "$deb" >/dev/null
    rm -rf "$staging"
    trap - EXIT
    echo "$deb"
}

for package in $packages; do
    build "$package"
done
