#!/usr/bin/env bash
# Installs the Steward agent on this host, enrolls it with a collector and
# starts it under systemd:
#
#   sudo ./install-agent.sh --collector https://collector.example.net:7443 \
#       --token ENROLLMENT-TOKEN --ca-fingerprint sha256:HEX
#
# The token comes from `steward-collector enroll-token create`, the
# fingerprint from `steward-collector ca-fingerprint` (see README "Running it
# for real"). Where dpkg exists the steward-agent package is installed (the
# newest steward-agent_*_ARCH.deb beside this script, or --package FILE);
# elsewhere the bare binary (./steward-agent beside this script, or
# --binary FILE) goes to /usr/local/bin with the unit from ./systemd/. The
# host is enrolled as the agent's user into /etc/steward/agent (agent.toml,
# ca.pem, agent.pem, agent.key), the token passed in a file.
#
# Running it again is harmless: an installed version is not reinstalled, an
# enrolled host is not enrolled again (unless --reenroll), and a running agent
# is restarted only if its binary or enrollment changed.
#
# Exit status: 0 done, 1 a step failed, 2 usage error, 3 unsupported system.
set -euo pipefail

# The enrollment's own directory, owned by the agent's user: the agent
# renews its certificate in place (a new file beside the old, then a rename).
readonly config_dir=/etc/steward/agent
readonly state_dir=/var/lib/steward-agent
readonly service=steward-agent.service
readonly user=steward-agent
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
    cat <<'USAGE'
usage: install-agent.sh --collector https://HOST:PORT --token TOKEN
                        --ca-fingerprint sha256:HEX [options]

  --collector URL        the collector's gRPC address, https://HOST:PORT
  --token TOKEN          an enrollment token (steward-collector enroll-token create);
                         visible in ps, sudo's log and shell history while it
                         is valid: prefer --token-file on shared hosts
  --token-file FILE      read the token from FILE instead (keeps it out of ps)
  --ca-fingerprint FP    the collector CA's SHA-256, sha256: and 64 hex digits
                         (steward-collector ca-fingerprint)
  --package FILE         install this steward-agent .deb
  --binary FILE          install this steward-agent binary (no package)
  --reenroll             enroll again although this host is enrolled
  --dry-run              print what would be done; change nothing
  -h, --help             this text
USAGE
}

usage_error() {
    echo "install-agent.sh: $*" >&2
    echo "Run install-agent.sh --help for the options." >&2
    exit 2
}

unsupported() {
    echo "install-agent.sh: unsupported system: $*" >&2
    exit 3
}

fail() {
    echo "install-agent.sh: $*" >&2
    exit 1
}

say() {
    echo "==> $*"
}

collector=
token=
token_file_given=
fingerprint=
package=
binary=
reenroll=false
dry_run=false

while [ $# -gt 0 ]; do
    case "$1" in
        --collector|--token|--token-file|--ca-fingerprint|--package|--binary)
            [ $# -ge 2 ] || usage_error "$1 needs a value"
            case "$1" in
                --collector) collector=$2 ;;
                --token) token=$2 ;;
                --token-file) token_file_given=$2 ;;
                --ca-fingerprint) fingerprint=$2 ;;
                --package) package=$2 ;;
                --binary) binary=$2 ;;
            esac
            shift 2
            ;;
        --reenroll) reenroll=true; shift ;;
        --dry-run) dry_run=true; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
done

# Arguments first, so a typo is reported before anything is looked at.
[ -n "$collector" ] || usage_error "missing --collector https://HOST:PORT"
if [ -n "$token_file_given" ]; then
    [ -z "$token" ] || usage_error "give --token or --token-file, not both"
    [ -r "$token_file_given" ] || usage_error "cannot read --token-file $token_file_given"
    token=$(tr -d '[:space:]' <"$token_file_given")
fi
[ -n "$token" ] || usage_error "missing --token or --token-file (create a token with: steward-collector enroll-token create)"
[ -n "$fingerprint" ] || usage_error "missing --ca-fingerprint (print it with: steward-collector ca-fingerprint)"
if ! [[ $collector =~ ^https://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}/?$ ]]; then
    usage_error "--collector must be https://HOST:PORT (the collector's grpc_listen), not '$collector'"
fi
if [[ $token =~ [[:space:]] ]]; then
    usage_error "--token must not contain spaces"
fi
if ! [[ $fingerprint =~ ^sha256:[0-9A-Fa-f]{64}$ ]]; then
    usage_error "--ca-fingerprint must be sha256: followed by 64 hex digits, not '$fingerprint'"
fi
if [ -n "$package" ] && [ -n "$binary" ]; then
    usage_error "give --package or --binary, not both"
fi

# What this script can set up: Linux with systemd as the service manager.
kernel=$(uname -s)
[ "$kernel" = Linux ] || unsupported "$kernel (install-agent.sh supports Linux with systemd; elsewhere run 'steward-agent enroll' and start the agent with the system's service manager)"
if ! [ -d /run/systemd/system ] || ! command -v systemctl >/dev/null 2>&1; then
    if $dry_run; then
        echo "note: systemd is not running here; a real run would refuse." >&2
    else
        unsupported "systemd is not running (install-agent.sh starts the agent as a systemd service)"
    fi
fi
if [ "$(id -u)" != 0 ]; then
    if $dry_run; then
        echo "note: not root; a real run needs root." >&2
    else
        fail "must run as root (sudo)"
    fi
fi

# Runs a command that changes the system; with --dry-run only prints it
# (a token given on a command line masked).
run() {
    if $dry_run; then
        local shown=() masked=false word
        for word in "$@"; do
            if $masked; then shown+=("***"); masked=false; else shown+=("$word"); fi
            [ "$word" = --token ] && masked=true
        done
        echo "+ ${shown[*]}"
    else
        "$@"
    fi
}

# True when the running agent must restart to pick up a change.
changed=false

install_package() {
    local file=$1 wanted installed
    [ -f "$file" ] || fail "no such package: $file"
    file=$(cd "$(dirname "$file")" && pwd)/$(basename "$file")
    wanted=$(dpkg-deb --field "$file" Version) || fail "$file is not a Debian package"
    [ "$(dpkg-deb --field "$file" Package)" = steward-agent ] || fail "$file is not the steward-agent package"
    installed=$(dpkg-query --show --showformat='${Status} ${Version}' steward-agent 2>/dev/null || true)
    if [ "$installed" = "install ok installed $wanted" ]; then
        say "steward-agent $wanted is already installed."
        return
    fi
    say "Installing $file."
    if command -v apt-get >/dev/null 2>&1; then
        # apt resolves the dependencies (adduser) that dpkg -i would leave broken.
        run apt-get install -y --no-install-recommends "$file"
    else
        run dpkg -i "$file"
    fi
    changed=true
}

install_binary() {
    local file=$1 unit=$here/systemd/steward-agent.service rendered
    [ -x "$file" ] || fail "no executable steward-agent at $file"
    # A binary for another architecture or a newer glibc fails here, not
    # later as a service that never starts.
    "$file" --version >/dev/null 2>&1 ||
        unsupported "$file does not run here (another architecture, or a glibc older than it needs): $("$file" --version 2>&1 | head -n 1)"
    [ -f "$unit" ] || fail "the unit file $unit is missing (keep install-agent.sh beside deploy/systemd/)"
    if ! getent passwd "$user" >/dev/null; then
        say "Creating the system user $user."
        run useradd --system --user-group --home-dir /var/lib/steward-agent \
            --no-create-home --shell /usr/sbin/nologin "$user"
    fi
    if cmp -s "$file" /usr/local/bin/steward-agent; then
        say "/usr/local/bin/steward-agent is up to date."
    else
        say "Installing $file as /usr/local/bin/steward-agent."
        run install -m 0755 "$file" /usr/local/bin/steward-agent
        changed=true
    fi
    rendered=$(sed 's#/usr/bin/steward-agent#/usr/local/bin/steward-agent#' "$unit")
    if [ "$rendered" != "$(cat /etc/systemd/system/$service 2>/dev/null || true)" ]; then
        say "Installing /etc/systemd/system/$service."
        if $dry_run; then
            echo "+ write /etc/systemd/system/$service"
        else
            printf '%s\n' "$rendered" >/etc/systemd/system/$service
        fi
        run systemctl daemon-reload
        changed=true
    fi
}

# 1. The program.
if [ -n "$binary" ]; then
    install_binary "$binary"
    agent=/usr/local/bin/steward-agent
elif [ -n "$package" ]; then
    command -v dpkg >/dev/null 2>&1 || fail "--package needs dpkg; on this system use --binary"
    install_package "$package"
    agent=/usr/bin/steward-agent
elif command -v dpkg >/dev/null 2>&1; then
    arch=$(dpkg --print-architecture)
    found=$(find "$here" -maxdepth 1 -name "steward-agent_*_${arch}.deb" | sort -V | tail -n 1)
    if [ -n "$found" ]; then
        install_package "$found"
    elif ! dpkg-query --show --showformat='${Status}' steward-agent 2>/dev/null | grep -q '^install ok installed$'; then
        fail "no steward-agent_*_${arch}.deb beside this script: pass --package FILE (build one with deploy/debian/build-deb.sh)"
    else
        say "steward-agent is installed (no newer package beside this script)."
    fi
    agent=/usr/bin/steward-agent
else
    install_binary "$here/steward-agent"
    agent=/usr/local/bin/steward-agent
fi

# 2. The enrollment: agent.toml, ca.pem, agent.pem and agent.key in
# /etc/steward/agent, written by the agent's user, and its id in the state
# directory.
enrolled() {
    [ -s "$config_dir/agent.toml" ] && [ -s "$config_dir/agent.key" ] && [ -s "$config_dir/agent.pem" ]
}

if enrolled && ! $reenroll; then
    say "This host is already enrolled ($config_dir/agent.key exists; --reenroll enrolls again)."
else
    say "Enrolling with $collector."
    run install -d -m 0755 /etc/steward
    run install -d -o "$user" -g "$user" -m 0750 "$config_dir" "$state_dir"
    # The token goes through a file only the agent's user reads, never the
    # process list.
    token_file=$(mktemp)
    trap 'rm -f "$token_file"' EXIT
    printf '%s\n' "$token" >"$token_file"
    run chown "$user" "$token_file"
    run runuser -u "$user" -- "$agent" enroll --collector "$collector" \
        --token-file "$token_file" --ca-fingerprint "$fingerprint" \
        --dir "$config_dir" --state-dir "$state_dir"
    rm -f "$token_file"
    changed=true
fi

# 3. The service.
run systemctl enable "$service"
if $changed && ! $dry_run && systemctl is-active --quiet "$service"; then
    say "Restarting the agent."
    run systemctl restart "$service"
else
    say "Starting the agent."
    run systemctl start "$service"
fi
if $dry_run; then
    exit 0
fi
# A bad configuration or key ends the agent within a second or two: it must
# still be running after five (an unreachable collector is not an error; the
# agent spools and retries).
for _ in $(seq 1 10); do
    sleep 0.5
    if ! systemctl is-active --quiet "$service"; then
        systemctl status --no-pager "$service" >&2 || true
        journalctl -u "$service" -n 20 --no-pager >&2 || true
        fail "steward-agent is not running (status and log above)"
    fi
done
say "steward-agent is running. Logs: journalctl -u steward-agent"
