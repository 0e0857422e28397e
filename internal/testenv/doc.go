// Package testenv starts the real services that integration tests run
// against: a Mosquitto broker (anonymous, or with a password file, an ACL
// and a TLS listener), an InfluxDB OSS 1.8 server with Flux enabled,
// a headless Chromium driven through chromedp, and an RTSP camera (FFmpeg
// publishing to an RTSP server in the test process). Each call starts a private
// instance on free 127.0.0.1 ports with its own config and data in
// t.TempDir(), waits until it answers, and stops it in t.Cleanup; on test
// failure the service's log is written to the test output. A missing binary
// fails the test with the make target that installs it (scripts/deps.sh),
// because a skipped integration test looks exactly like a passing one. The
// package is imported only from _test.go files.
package testenv
