#!/usr/bin/env bash
# The one test command. On a fresh machine of this kind it installs what is
# missing, starts every server the tests need (by PID, on loopback), runs
# go vet and go test -race with the servers' addresses in the environment,
# and stops the servers again. It fails if any server cannot start.
#
#   ./infra/test.sh                 # everything
#   ./infra/test.sh ./core/...      # only some packages (servers still started)
#   ./infra/test.sh --serve FILE    # start the servers, write their variables to
#                                   # FILE (source it), and wait until killed
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '[test.sh] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# --- tools ------------------------------------------------------------------
need_pkgs=()
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v redis-cli >/dev/null || need_pkgs+=(redis-tools)
command -v openssl >/dev/null || need_pkgs+=(openssl)
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
    || die "could not install ${need_pkgs[*]}"
fi
command -v go >/dev/null || die "go is not on PATH (Go 1.26 is required)"
REDIS_SERVER=$(command -v redis-server)

WORK=$(mktemp -d /tmp/shiftflow-test.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

free_port() {
  local p
  while :; do
    p=$(( (RANDOM % 20000) + 30000 ))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
}

wait_ping() { # wait_ping <name> <redis-cli args...>
  local name=$1; shift
  for _ in $(seq 100); do
    if redis-cli "$@" PING 2>/dev/null | grep -q PONG; then return 0; fi
    sleep 0.1
  done
  die "$name did not answer PING"
}

start_redis() { # start_redis <name> <args...>; prints the PID
  local name=$1; shift
  "$REDIS_SERVER" "$@" --save "" --appendonly no --daemonize no \
    --logfile "$WORK/$name.log" --dir "$WORK" &
  PIDS+=($!)
}

# --- plain Redis: reuse 127.0.0.1:6379 when it answers ----------------------
if redis-cli -h 127.0.0.1 -p 6379 PING 2>/dev/null | grep -q PONG; then
  PLAIN_PORT=6379
  log "plain redis: reusing 127.0.0.1:6379"
else
  PLAIN_PORT=$(free_port)
  start_redis plain --bind 127.0.0.1 --port "$PLAIN_PORT"
  wait_ping "plain redis" -h 127.0.0.1 -p "$PLAIN_PORT"
  log "plain redis: started on $PLAIN_PORT"
fi

# --- TLS Redis with a CA and certificate made for this run ------------------
TLS_DIR="$WORK/tls"; mkdir -p "$TLS_DIR"
(
  cd "$TLS_DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=shiftflow test CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile ext.cnf -out server.pem 2>/dev/null
) || die "could not generate the TLS CA and certificate"
TLS_PORT=$(free_port)
TLS_PASSWORD="tls-$(openssl rand -hex 12)"
start_redis tls --bind 127.0.0.1 --port 0 --tls-port "$TLS_PORT" \
  --tls-cert-file "$TLS_DIR/server.pem" --tls-key-file "$TLS_DIR/server.key" \
  --tls-ca-cert-file "$TLS_DIR/ca.pem" --tls-auth-clients no --requirepass "$TLS_PASSWORD"
wait_ping "TLS redis" -h 127.0.0.1 -p "$TLS_PORT" --tls --cacert "$TLS_DIR/ca.pem" -a "$TLS_PASSWORD" --no-auth-warning
log "TLS redis: started on $TLS_PORT"

# --- three-node Redis Cluster -----------------------------------------------
CLUSTER_ADDRS=()
for i in 1 2 3; do
  p=$(free_port); bus=$(free_port)
  mkdir -p "$WORK/cluster$i"
  "$REDIS_SERVER" --bind 127.0.0.1 --port "$p" --cluster-enabled yes --cluster-port "$bus" \
    --cluster-config-file "$WORK/cluster$i/nodes.conf" --cluster-node-timeout 5000 \
    --save "" --appendonly no --dir "$WORK/cluster$i" --logfile "$WORK/cluster$i.log" &
  PIDS+=($!)
  wait_ping "cluster node $i" -h 127.0.0.1 -p "$p"
  CLUSTER_ADDRS+=("127.0.0.1:$p")
done
redis-cli --cluster create "${CLUSTER_ADDRS[@]}" --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log" 2>&1 \
  || { cat "$WORK/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
for a in "${CLUSTER_ADDRS[@]}"; do
  ok=""
  for _ in $(seq 100); do
    if redis-cli -h "${a%:*}" -p "${a#*:}" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok'; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || die "cluster node $a never reached cluster_state:ok"
done
log "redis cluster: ${CLUSTER_ADDRS[*]}"

# --- MongoDB wire-protocol server (FerretDB on SQLite) ----------------------
log "building the MongoDB wire-protocol server (FerretDB)"
go build -o "$WORK/mongoserver" ./infra/mongoserver || die "could not build infra/mongoserver"
MONGO_PORT=$(free_port)
"$WORK/mongoserver" -addr "127.0.0.1:$MONGO_PORT" -dir "$WORK/mongo" >"$WORK/mongo.out" 2>"$WORK/mongo.log" &
PIDS+=($!)
for _ in $(seq 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/$MONGO_PORT) 2>/dev/null; then break; fi
  sleep 0.1
done
(exec 3<>/dev/tcp/127.0.0.1/$MONGO_PORT) 2>/dev/null || { cat "$WORK/mongo.log" >&2; die "FerretDB did not start"; }
log "mongodb (FerretDB): 127.0.0.1:$MONGO_PORT"

export SHIFTFLOW_TEST_REDIS_URL="redis://127.0.0.1:$PLAIN_PORT/0"
export SHIFTFLOW_TEST_REDIS_TLS_URL="rediss://:$TLS_PASSWORD@localhost:$TLS_PORT/0"
export SHIFTFLOW_TEST_REDIS_TLS_CA_FILE="$TLS_DIR/ca.pem"
export SHIFTFLOW_TEST_REDIS_CLUSTER_ADDRS=$(IFS=,; echo "${CLUSTER_ADDRS[*]}")
export SHIFTFLOW_TEST_MONGODB_URI="mongodb://127.0.0.1:$MONGO_PORT/"
export SHIFTFLOW_TEST_REDIS_SERVER="$REDIS_SERVER"

if [ "${1:-}" = "--serve" ]; then
  out=${2:-/tmp/shiftflow-test.env}
  env | grep '^SHIFTFLOW_TEST_' | sed 's/^/export /' > "$out"
  log "servers up; variables in $out (source it); Ctrl-C or kill $$ stops them"
  sleep infinity &
  PIDS+=($!)
  wait $! || true
fi

PKGS=("$@")
((${#PKGS[@]})) || PKGS=(./...)

log "go vet ${PKGS[*]}"
go vet "${PKGS[@]}"
log "go test -race ${PKGS[*]}"
# Two cores: two packages at a time; the fault tests start their own servers.
go test -race -p 2 -timeout 30m "${PKGS[@]}"
if [ -f bench/go.mod ] && [ $# -eq 0 ]; then
  log "bench module: go vet and go test"
  (cd bench && go vet ./... && go test -race -timeout 10m ./...)
fi
if [ $# -eq 0 ]; then
  log "openapi: redocly lint and a typed TypeScript client (infra/openapi/check.sh)"
  ./infra/openapi/check.sh || die "the OpenAPI check failed"
fi
log "all tests passed"
