#!/usr/bin/env bash
# deps.sh installs the real services that integration tests start:
# Mosquitto, Chromium and FFmpeg (the benchmark's camera) from Debian apt,
# InfluxDB OSS 1.8.10 built with
# `go install` into $(go env GOPATH)/bin, and the linter make test runs
# (staticcheck), likewise. It is idempotent and quick when
# everything is already present; internal/testenv finds the binaries in the
# same places. Run it as root on CI (apt needs root); as another user it
# builds influxd, reports the missing apt packages and exits non-zero.
#
# `deps.sh telegraf` builds only Telegraf v1.37.2 (the plugins the
# comparison benchmark uses) into $(go env GOPATH)/bin/telegraf, cached the
# same way; BenchmarkTelegrafComparison (e2e) runs it when the binary is
# missing, so `make test` never pays the few minutes of that build.
#
# `deps.sh go2rtc` builds go2rtc v1.9.13 (the live video benchmark's peer)
# into $(go env GOPATH)/bin/go2rtc the same way, for BenchmarkLive (e2e).
# `make bench` runs both before its benchmarks, so that no build shares
# the cores with a measurement.
set -euo pipefail

readonly TELEGRAF_MODULE=github.com/influxdata/telegraf
readonly TELEGRAF_VERSION=v1.37.2
readonly TELEGRAF_TAGS=custom,inputs.mqtt_consumer,outputs.influxdb_v2,parsers.json_v2

# telegraf_ok says whether $1 is Telegraf ${TELEGRAF_VERSION} built with
# exactly ${TELEGRAF_TAGS}.
telegraf_ok() {
	local info
	[[ -x "$1" ]] || return 1
	info=$(go version -m "$1" 2>/dev/null) || return 1
	grep -Eq "^[[:space:]]+mod[[:space:]]+${TELEGRAF_MODULE}[[:space:]]+${TELEGRAF_VERSION}([[:space:]]|$)" <<<"$info" &&
		grep -Eq "^[[:space:]]+build[[:space:]]+-tags=${TELEGRAF_TAGS}$" <<<"$info"
}

# cached_build NAME OK BUILD DESCRIPTION builds the peer binary NAME into
# $(go env GOPATH)/bin with the function BUILD (given the target path)
# unless the function OK accepts what is there, under a lock so parallel
# benchmarks build it once, then prints where it is and what.
cached_build() {
	local name=$1 ok=$2 build=$3 what=$4 gopath gobin bin
	command -v go >/dev/null || { echo "deps: go is not on PATH" >&2; exit 1; }
	gopath=$(go env GOPATH)
	gobin="${gopath%%:*}/bin"
	bin="$gobin/$name"
	if ! "$ok" "$bin"; then
		mkdir -p "$gobin"
		exec 7>"${TMPDIR:-/tmp}/citywatch-$name-install.lock"
		flock 7
		if ! "$ok" "$bin"; then
			echo "deps: building $what (takes a few minutes the first time)" >&2
			"$build" "$bin"
		fi
		flock -u 7
		"$ok" "$bin" || { echo "deps: $bin is not $what after the build" >&2; exit 1; }
	fi
	printf '%-10s %-40s %s\n' "$name" "$bin" "$what"
}

build_telegraf() {
	GOBIN="$(dirname "$1")" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install -tags "$TELEGRAF_TAGS" \
		"${TELEGRAF_MODULE}/cmd/telegraf@${TELEGRAF_VERSION}"
}

if [[ "${1:-}" == telegraf ]]; then
	cached_build telegraf telegraf_ok build_telegraf "${TELEGRAF_MODULE} ${TELEGRAF_VERSION} (${TELEGRAF_TAGS})"
	exit 0
fi

readonly GO2RTC_MODULE=github.com/AlexxIT/go2rtc
readonly GO2RTC_VERSION=v1.9.13

# go2rtc_ok says whether $1 is go2rtc ${GO2RTC_VERSION}. Built from a copy of
# its module, the binary's build information has no module version; the
# version go2rtc prints is its own constant.
go2rtc_ok() {
	local info ver
	[[ -x "$1" ]] || return 1
	info=$(go version -m "$1" 2>/dev/null) || return 1
	grep -Eq "^[[:space:]]+path[[:space:]]+${GO2RTC_MODULE}$" <<<"$info" || return 1
	ver=$("$1" -version 2>/dev/null) || return 1
	[[ "$ver" == "go2rtc version ${GO2RTC_VERSION#v} "* ]]
}

# build_go2rtc builds go2rtc into $1. The module proxy serves it, but
# `go install` refuses it: two C files (generators of Go constants, not part
# of the program) break a build without cgo. So it builds a copy without them.
build_go2rtc() {
	local work src
	work=$(mktemp -d)
	(cd "$work" && go mod init deps.local/go2rtc 2>/dev/null &&
		go get "${GO2RTC_MODULE}@${GO2RTC_VERSION}")
	src=$(cd "$work" && go list -m -f '{{.Dir}}' "$GO2RTC_MODULE")
	cp -R "$src" "$work/src"
	chmod -R u+w "$work/src"
	rm -f "$work/src/pkg/alsa/device/asound_arch.c" "$work/src/pkg/v4l2/device/videodev2_arch.c"
	(cd "$work/src" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false" go build -trimpath -o "$1" .)
	rm -rf "$work"
}

if [[ "${1:-}" == go2rtc ]]; then
	cached_build go2rtc go2rtc_ok build_go2rtc "${GO2RTC_MODULE} ${GO2RTC_VERSION}"
	exit 0
fi

readonly INFLUXD_MODULE=github.com/influxdata/influxdb
readonly INFLUXD_VERSION=v1.8.10

# find_bin prints the path of the first of the given names found on PATH or
# as an absolute path; /usr/sbin is searched too because mosquitto lives
# there and non-root PATHs often lack it.
find_bin() {
	local name
	for name in "$@"; do
		if [[ "$name" == /* ]]; then
			[[ -x "$name" ]] && { echo "$name"; return 0; }
		elif PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v "$name" >/dev/null 2>&1; then
			PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v "$name"
			return 0
		fi
	done
	return 1
}

mosquitto_bin() { find_bin "${CITYWATCH_MOSQUITTO:-mosquitto}" mosquitto /usr/sbin/mosquitto; }
chromium_bin() { find_bin "${CITYWATCH_CHROMIUM:-chromium}" chromium /usr/bin/chromium; }
ffmpeg_bin() { find_bin "${CITYWATCH_FFMPEG:-ffmpeg}" ffmpeg /usr/bin/ffmpeg; }

# --- apt packages -----------------------------------------------------------
missing=()
mosquitto_bin >/dev/null || missing+=(mosquitto)
chromium_bin >/dev/null || missing+=(chromium)
ffmpeg_bin >/dev/null || missing+=(ffmpeg)

status=0
if ((${#missing[@]} > 0)) && [[ $(id -u) -ne 0 ]]; then
	# Not root: still build influxd below, then fail.
	echo "deps: missing ${missing[*]}; install as root: apt-get install -y ${missing[*]}" >&2
	status=1
elif ((${#missing[@]} > 0)); then
	echo "deps: installing ${missing[*]} with apt-get" >&2
	export DEBIAN_FRONTEND=noninteractive
	# Wait for a concurrent apt/dpkg instead of failing on its lock.
	apt_opts=(-o DPkg::Lock::Timeout=900)
	apt-get "${apt_opts[@]}" update -q
	apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "${missing[@]}"
fi

# --- InfluxDB 1.8.10 ----------------------------------------------------------
command -v go >/dev/null || { echo "deps: go is not on PATH" >&2; exit 1; }
gopath=$(go env GOPATH)
gobin="${gopath%%:*}/bin"
influxd="$gobin/influxd"

# `go install` does not stamp a version into influxd (`influxd version` says
# "vunknown" unless -ldflags set it), so the module version recorded in the
# binary's build info is what identifies it.
influxd_ok() {
	local info
	[[ -x "$influxd" ]] || return 1
	# Captured first: `grep -q` exiting early would SIGPIPE `go` under pipefail.
	info=$(go version -m "$influxd" 2>/dev/null) || return 1
	grep -Eq "^[[:space:]]+mod[[:space:]]+${INFLUXD_MODULE}[[:space:]]+${INFLUXD_VERSION}([[:space:]]|$)" <<<"$info"
}

if ! influxd_ok; then
	mkdir -p "$gobin"
	# Serialise concurrent runs (parallel CI jobs on one machine).
	exec 9>"${TMPDIR:-/tmp}/citywatch-influxd-install.lock"
	flock 9
	if ! influxd_ok; then
		echo "deps: building influxd ${INFLUXD_VERSION} (takes a few minutes the first time)" >&2
		GOBIN="$gobin" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install \
			-ldflags "-X main.version=${INFLUXD_VERSION#v} -X main.branch=${INFLUXD_VERSION} -X main.commit=go-install" \
			"${INFLUXD_MODULE}/cmd/influxd@${INFLUXD_VERSION}"
	fi
	flock -u 9
	influxd_ok || { echo "deps: $influxd is not ${INFLUXD_VERSION} after go install" >&2; exit 1; }
fi

# --- staticcheck (the linter make test runs) ---------------------------------------
readonly STATICCHECK_VERSION=v0.8.2
staticcheck="$gobin/staticcheck"
staticcheck_ok() {
	local info
	[[ -x "$staticcheck" ]] || return 1
	info=$(go version -m "$staticcheck" 2>/dev/null) || return 1
	grep -Eq "^[[:space:]]+mod[[:space:]]+honnef.co/go/tools[[:space:]]+${STATICCHECK_VERSION}([[:space:]]|$)" <<<"$info"
}
if ! staticcheck_ok; then
	exec 8>"${TMPDIR:-/tmp}/citywatch-staticcheck-install.lock"
	flock 8
	if ! staticcheck_ok; then
		echo "deps: installing staticcheck ${STATICCHECK_VERSION}" >&2
		GOBIN="$gobin" go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
	fi
	flock -u 8
	staticcheck_ok || { echo "deps: $staticcheck is not ${STATICCHECK_VERSION} after go install" >&2; exit 1; }
fi

# --- report ---------------------------------------------------------------------
if m=$(mosquitto_bin); then
	# `mosquitto -h` exits non-zero; only its first line matters.
	m_ver=$({ "$m" -h 2>&1 || true; } | head -n1)
else
	m=MISSING m_ver="apt-get install mosquitto"
fi
if c=$(chromium_bin); then
	# The Debian wrapper script prints shell noise on stderr.
	c_ver=$({ "$c" --version 2>/dev/null || true; } | head -n1)
else
	c=MISSING c_ver="apt-get install chromium"
fi
if f=$(ffmpeg_bin); then
	f_ver=$({ "$f" -version 2>/dev/null || true; } | head -n1)
else
	f=MISSING f_ver="apt-get install ffmpeg"
fi
printf '%-10s %-40s %s\n' mosquitto "$m" "$m_ver"
printf '%-10s %-40s %s\n' chromium "$c" "$c_ver"
printf '%-10s %-40s %s\n' ffmpeg "$f" "$f_ver"
printf '%-10s %-40s %s\n' influxd "$influxd" "${INFLUXD_MODULE} ${INFLUXD_VERSION}"
printf '%-10s %-40s %s\n' staticcheck "$staticcheck" "honnef.co/go/tools ${STATICCHECK_VERSION}"
exit "$status"
