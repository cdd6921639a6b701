#!/bin/sh
# Installs the steward-agent and steward-collector packages for real, sets up
# the collector as docs/packaging.md says, upgrades, removes and purges, all
# in a copy-on-write copy of this machine's root, so nothing here changes.
#
#   unshare --mount --net --fork sh isolated-install.sh SCRATCH DEB_DIR
#
# Needs root (unshare, mount, chroot). SCRATCH is an empty directory: a tmpfs
# goes over it, holding the overlay's writes, in this mount namespace only;
# the network namespace keeps the collector's ports off the machine's.
# Exit status 77: overlayfs is not available here (the caller skips).
set -eu

scratch=$1
debs=$2

mount --make-rprivate /
mount -t tmpfs tmpfs "$scratch"
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"
if ! mount -t overlay overlay \
    -o "lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/root"; then
    echo "SKIP: cannot mount an overlay over / here" >&2
    exit 77
fi
mount --bind /proc "$scratch/root/proc"
mount --bind /dev "$scratch/root/dev"
mkdir -p "$scratch/root/debs"
mount --bind "$debs" "$scratch/root/debs"
ip link set lo up

chroot "$scratch/root" /bin/sh -eu <<'INNER'
check() {
    if eval "$2"; then
        echo "ok: $1"
    else
        echo "FAILED: $1 ($2)" >&2
        exit 1
    fi
}
mode() {
    stat -c '%U:%G %a' "$1"
}

# Start from a machine without Steward (this copy only).
dpkg --purge steward-agent steward-collector >/dev/null 2>&1 || true
rm -rf /etc/steward /var/lib/steward /var/lib/steward-agent

dpkg -i /debs/steward-agent_*.deb /debs/steward-collector_*.deb
check "users created" 'getent passwd steward-agent >/dev/null && getent passwd steward >/dev/null'
check "users cannot log in" '[ "$(getent passwd steward-agent | cut -d: -f7)" = /usr/sbin/nologin ]'
check "binaries root:root 755" '[ "$(mode /usr/bin/steward-agent)" = "root:root 755" ] && [ "$(mode /usr/bin/steward-collector)" = "root:root 755" ]'
check "units root:root 644" '[ "$(mode /lib/systemd/system/steward-agent.service)" = "root:root 644" ] && [ "$(mode /lib/systemd/system/steward-collector.service)" = "root:root 644" ]'
check "examples root:root 644" '[ "$(mode /etc/steward/agent.toml.example)" = "root:root 644" ] && [ "$(mode /etc/steward/collector.toml.example)" = "root:root 644" ]'
check "nothing configured by the packages" '[ ! -e /etc/steward/agent.toml ] && [ ! -e /etc/steward/collector.toml ]'
check "enabled nowhere" '! ls /etc/systemd/system/*/steward-* >/dev/null 2>&1'

# The collector's set-up, as docs/packaging.md gives it (ports on loopback:
# this network namespace has nothing else).
steward-collector init /etc/steward --state-dir /var/lib/steward \
    --grpc-listen 127.0.0.1:7443 --server-name collector.example.net >/dev/null
chgrp steward /etc/steward/ca.key /etc/steward/server.key /etc/steward/agent-tokens /etc/steward/api-token
chmod 0640 /etc/steward/ca.key /etc/steward/server.key /etc/steward/agent-tokens /etc/steward/api-token
# What the unit's StateDirectory=steward does before a start: create the
# directory, or, when its owner is not the service user (init ran as root and
# created the database), hand it and everything in it to that user.
install -d -m 0750 /var/lib/steward
chown -R steward:steward /var/lib/steward
setpriv --reuid=steward --regid=steward --init-groups --no-new-privs \
    steward-collector --config /etc/steward/collector.toml >/tmp/collector.log 2>&1 &
collector=$!
for _ in $(seq 1 100); do
    grep -q "Collector listening." /tmp/collector.log && break
    kill -0 "$collector" 2>/dev/null || break
    sleep 0.2
done
check "the collector runs as steward on init's setup" 'grep -q "Collector listening." /tmp/collector.log || { cat /tmp/collector.log >&2; false; }'
check "its database is in /var/lib/steward, steward's" '[ "$(stat -c %U /var/lib/steward/steward.db)" = steward ]'

# The agent as its unit runs it: its own user, CAP_NET_RAW and nothing else,
# state in /var/lib/steward-agent (StateDirectory=steward-agent), its config
# in /etc/steward/agent, its own, as install-agent.sh's enrollment leaves it.
# The config is init's local one.
install -d -o steward-agent -g steward-agent -m 0750 /etc/steward/agent /var/lib/steward-agent
sed 's#^state_dir = .*#state_dir = "/var/lib/steward-agent"#' /etc/steward/agent.toml >/etc/steward/agent/agent.toml
printf '\n[[ping]]\ntarget = "127.0.0.1"\n' >>/etc/steward/agent/agent.toml
# init's agent authenticates with a token, or (with enrollment) with the
# certificate and key init signed for it.
for file in ca.pem agent.pem agent.key; do
    if [ -e "/etc/steward/$file" ]; then
        cp "/etc/steward/$file" "/etc/steward/agent/$file"
        chown steward-agent:steward-agent "/etc/steward/agent/$file"
    fi
done
# A certificate names its agent id: keep the id init gave it.
if [ -e /etc/steward/agent-state/agent-id ]; then
    install -o steward-agent -g steward-agent -m 0640 /etc/steward/agent-state/agent-id /var/lib/steward-agent/agent-id
fi
chown steward-agent:steward-agent /etc/steward/agent/agent.toml
chmod 0600 /etc/steward/agent/agent.toml
setpriv --reuid=steward-agent --regid=steward-agent --init-groups --no-new-privs \
    --inh-caps=-all,+net_raw --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw \
    steward-agent --config /etc/steward/agent/agent.toml >/tmp/agent.log 2>&1 &
agent=$!
for _ in $(seq 1 100); do
    grep -q "Agent connected." /tmp/collector.log && break
    kill -0 "$agent" 2>/dev/null || break
    sleep 0.2
done
check "the agent, as steward-agent, reaches the collector" 'grep -q "Agent connected." /tmp/collector.log || { cat /tmp/agent.log >&2; false; }'
check "its one capability opens raw ICMP sockets" 'grep -q "ICMP sockets opened. v4=Raw" /tmp/agent.log || { cat /tmp/agent.log >&2; false; }'
check "its state is in /var/lib/steward-agent, its own" '[ "$(stat -c %U /var/lib/steward-agent/spool)" = steward-agent ]'
check "it may renew its certificate in /etc/steward/agent" 'runuser -u steward-agent -- sh -c "echo renewed >/etc/steward/agent/agent.pem.new && mv /etc/steward/agent/agent.pem.new /etc/steward/agent/agent.pem"'
check "it may not write the rest of /etc/steward" '! runuser -u steward-agent -- touch /etc/steward/ca.pem 2>/dev/null && ! runuser -u steward-agent -- touch /etc/steward/new 2>/dev/null'
kill -TERM "$agent"
wait "$agent" || true

# install-agent.sh for real, as README says, against the running collector.
# systemd is not running here: a stand-in systemctl runs the agent with the
# unit's user, capability and command line. Where this steward-agent has no
# `enroll` yet, a stand-in enroll writes init's token configuration instead
# of a certificate (the script's other steps are the same).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mkdir -p /run/systemd/system
cat >/usr/local/sbin/systemctl <<'STANDIN'
#!/bin/sh
# Stand-in systemctl for steward-agent.service (see isolated-install.sh).
echo "systemctl $*" >>/tmp/systemctl.log
running() { [ -f /tmp/agent.pid ] && kill -0 "$(cat /tmp/agent.pid)" 2>/dev/null; }
start() {
    setpriv --reuid=steward-agent --regid=steward-agent --init-groups --no-new-privs \
        --inh-caps=-all,+net_raw --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw \
        /usr/bin/steward-agent --config /etc/steward/agent/agent.toml >>/tmp/agent-unit.log 2>&1 &
    echo $! >/tmp/agent.pid
}
case "$1" in
    start) running || start ;;
    restart) if running; then kill "$(cat /tmp/agent.pid)"; sleep 0.2; fi; start ;;
    is-active) [ "$2" = --quiet ] && shift; running ;;
    status) cat /tmp/agent-unit.log ;;
    *) ;;
esac
STANDIN
chmod 0755 /usr/local/sbin/systemctl
if steward-agent enroll --help >/dev/null 2>&1; then
    token=$(runuser -u steward -- steward-collector enroll-token create --config /etc/steward/collector.toml --ttl 1h)
    fingerprint=$(runuser -u steward -- steward-collector ca-fingerprint --config /etc/steward/collector.toml)
else
    echo "note: this steward-agent has no enroll command; a stand-in enrolls"
    install -m 0644 /etc/steward/agent.toml /tmp/init-agent.toml
    mv /usr/bin/steward-agent /usr/bin/steward-agent.real
    cat >/usr/bin/steward-agent <<'STANDIN'
#!/bin/sh
# Stand-in for `steward-agent enroll` (see isolated-install.sh).
if [ "$1" != enroll ]; then
    exec /usr/bin/steward-agent.real "$@"
fi
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir=$2; shift ;;
        --state-dir) state=$2; shift ;;
        --token-file) [ -s "$2" ] || exit 1; shift ;;
    esac
    shift
done
sed "s#^state_dir = .*#state_dir = \"$state\"#" /tmp/init-agent.toml >"$dir/agent.toml"
cp /etc/steward/ca.pem "$dir/ca.pem"
echo "stand-in certificate" >"$dir/agent.pem"
(umask 077 && echo "stand-in key" >"$dir/agent.key")
STANDIN
    chmod 0755 /usr/bin/steward-agent
    token=stand-in-token
    fingerprint=sha256:0000000000000000000000000000000000000000000000000000000000000000
fi
rm -rf /etc/steward/agent /var/lib/steward-agent
connected_before=$(grep -c "Agent connected." /tmp/collector.log)
echo "$token" >/tmp/token
bash /debs/install-agent.sh --collector https://127.0.0.1:7443 \
    --token-file /tmp/token --ca-fingerprint "$fingerprint" >/tmp/install-agent.log 2>&1 ||
    { cat /tmp/install-agent.log /tmp/agent-unit.log >&2; false; }
check "install-agent.sh enrolled, enabled and started the agent" 'grep -q "steward-agent is running" /tmp/install-agent.log && grep -q "systemctl enable steward-agent.service" /tmp/systemctl.log'
check "the enrollment is the agent user's, the key 0600" '[ "$(mode /etc/steward/agent/agent.key)" = "steward-agent:steward-agent 600" ] && [ "$(stat -c %U /etc/steward/agent/agent.toml)" = steward-agent ]'
check "the token file is gone" '[ -z "$(find /tmp -maxdepth 1 -name "tmp.*" -user steward-agent)" ]'
for _ in $(seq 1 100); do
    [ "$(grep -c "Agent connected." /tmp/collector.log)" -gt "$connected_before" ] && break
    sleep 0.2
done
check "the enrolled agent reaches the collector" '[ "$(grep -c "Agent connected." /tmp/collector.log)" -gt "$connected_before" ] || { cat /tmp/agent-unit.log >&2; false; }'
bash /debs/install-agent.sh --collector https://127.0.0.1:7443 \
    --token-file /tmp/token --ca-fingerprint "$fingerprint" >/tmp/install-agent-again.log 2>&1 ||
    { cat /tmp/install-agent-again.log >&2; false; }
check "a second run changes nothing" 'grep -q "already installed" /tmp/install-agent-again.log && grep -q "already enrolled" /tmp/install-agent-again.log && ! grep -q "systemctl restart" /tmp/systemctl.log'
kill -TERM "$(cat /tmp/agent.pid)" "$collector"
wait "$collector" || true
if [ -e /usr/bin/steward-agent.real ]; then
    mv /usr/bin/steward-agent.real /usr/bin/steward-agent
fi
rm -rf /usr/local/sbin/systemctl /run/systemd

# An upgrade (the same version again) keeps the users and the setup.
uid=$(id -u steward-agent)
dpkg -i /debs/steward-agent_*.deb /debs/steward-collector_*.deb
check "upgrade keeps the user" '[ "$(id -u steward-agent)" = "$uid" ]'
check "upgrade keeps the setup" '[ -s /etc/steward/collector.toml ] && [ -s /etc/steward/ca.key ]'

# Remove, then purge.
dpkg -r steward-agent
check "remove deletes the binary" '[ ! -e /usr/bin/steward-agent ]'
check "remove keeps the conffile, the enrollment and the state" '[ -e /etc/steward/agent.toml.example ] && [ -s /etc/steward/agent/agent.toml ] && [ -d /var/lib/steward-agent ]'
dpkg -P steward-agent
check "purge deletes the agent's enrollment, state and conffile" '[ ! -e /etc/steward/agent ] && [ ! -e /var/lib/steward-agent ] && [ ! -e /etc/steward/agent.toml.example ]'
check "purge keeps the user" 'getent passwd steward-agent >/dev/null'
dpkg -P steward-collector
check "collector purge keeps the database and the setup" '[ -s /var/lib/steward/steward.db ] && [ -s /etc/steward/collector.toml ] && [ -s /etc/steward/ca.key ]'
check "collector purge deletes the binary and the examples" '[ ! -e /usr/bin/steward-collector ] && [ ! -e /etc/steward/collector.toml.example ]'
echo "isolated install: all checks passed"
INNER
