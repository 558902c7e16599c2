#!/usr/bin/env bash
# Smoke test of the container image (docs/docker.md): build it, check it runs as a non-root user,
# run `koosim verify` in it against the bundled reference merchant, check that `koosim serve`
# refuses a non-loopback bind without KOOSIM_SERVE_TOKEN, then serve with a token on 0.0.0.0
# and call the JSON API from the host without the token (refused) and with it (200).
#
#   scripts/docker-smoke.sh              # image tag koosim:smoke (KOOSIM_SMOKE_IMAGE to change it)
#
# Exits 0 when every step passed, or when no docker engine answers (it says it skipped);
# non-zero, naming the failed step, otherwise. The token is random, passed to the container
# through the environment (never on a command line) and never printed. The container is
# removed on exit; the image is kept (docker rmi koosim:smoke).
set -euo pipefail
cd "$(dirname "$0")/.."

image="${KOOSIM_SMOKE_IMAGE:-koosim:smoke}"
# ASSUMPTION: koosim serve accepts the token as a bearer token; change this line if it does not.
auth_scheme="Authorization: Bearer"

say() { printf 'docker-smoke: %s\n' "$*"; }
fail() { say "FAILED: $*" >&2; exit 1; }

if ! command -v docker >/dev/null 2>&1; then
    say "skipped: no docker command on PATH"
    exit 0
fi
if ! docker info >/dev/null 2>&1; then
    say "skipped: no docker engine answers (docker info failed)"
    exit 0
fi
command -v curl >/dev/null 2>&1 || fail "curl is needed on the host"

container=""
cleanup() { if [ -n "$container" ]; then docker rm -f "$container" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

say "1/6 docker build -t $image ."
docker build --quiet -t "$image" . >/dev/null || fail "docker build"

say "2/6 the image runs as a non-root user"
uid=$(docker run --rm --entrypoint id "$image" -u) || fail "docker run id -u"
[ "$uid" != "0" ] || fail "the container runs as root"

say "3/6 koosim verify inside the image (the bundled reference merchant)"
docker run --rm "$image" verify >/dev/null || fail "koosim verify exited $?"

say "4/6 koosim serve --host 0.0.0.0 without KOOSIM_SERVE_TOKEN is refused"
if timeout 60 docker run --rm "$image" serve --host 0.0.0.0 --port 8000 >/dev/null 2>&1; then
    fail "serve on 0.0.0.0 without a token started and exited 0"
else
    status=$?
    [ "$status" -ne 124 ] || fail "serve on 0.0.0.0 without a token was still running after 60 s"
fi

say "5/6 koosim serve --host 0.0.0.0 with a token, published on 127.0.0.1"
KOOSIM_SERVE_TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
export KOOSIM_SERVE_TOKEN
container=$(docker run -d -e KOOSIM_SERVE_TOKEN -p 127.0.0.1::8000 "$image" serve --host 0.0.0.0 --port 8000) \
    || fail "docker run serve"
port=$(docker port "$container" 8000/tcp | head -n 1 | sed 's/.*://')
[ -n "$port" ] || fail "no host port published for 8000"
url="http://127.0.0.1:$port/api/target"
for _ in $(seq 1 60); do
    if curl -s -o /dev/null "$url"; then break; fi
    sleep 0.5
done

say "6/6 GET /api/target without and with the token"
without=$(curl -s -o /dev/null -w '%{http_code}' "$url") || fail "serve does not answer on $url"
case "$without" in
    401 | 403) ;;
    *) fail "without the token: HTTP $without, expected 401 or 403" ;;
esac
# The header goes through a file descriptor, so the token is not on curl's command line either.
with=$(curl -s -o /dev/null -w '%{http_code}' -H @- "$url" <<<"$auth_scheme $KOOSIM_SERVE_TOKEN") \
    || fail "serve does not answer on $url"
[ "$with" = "200" ] || fail "with the token: HTTP $with, expected 200"

say "passed: $image"
