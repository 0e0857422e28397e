// Package ui is the monitoring-centre console: static HTML, CSS and plain ES
// modules, with no build step, embedded in the hub binary. The hub serves FS
// at "/"; the console talks to the hub's JSON API and the /api/events
// websocket on the same origin. Translations live in i18n.json so tests can
// check that every English string has a Chinese one.
package ui

import (
	"embed"
	"io/fs"
)

// The patterns name file types rather than files, so a new module is
// embedded without touching this line; TestEveryFileEmbedded catches a new
// type. vendor/ holds the third-party libraries the map and reports load
// on first use, each with its licence.
//
//go:embed *.html *.css *.js *.json *.svg vendor
var files embed.FS

// FS returns the console's files, with index.html at the root.
func FS() fs.FS { return files }
