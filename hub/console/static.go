package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// static serves the console's files from Deps.UI. The files are plain ES
// modules without content hashes in their names, so every file is served
// with no-cache and a content ETag: browsers revalidate each load, cheaply,
// and never run a stale module next to a new index.html. The files are few
// and small, so each is read whole per request; that also keeps a UI served
// from a directory during development always current.
func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r)
		return
	}
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if strings.HasSuffix(r.URL.Path, "/") {
		name = path.Join(name, "index.html")
	}
	if !fs.ValidPath(name) {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	b, err := fs.ReadFile(s.ui, name)
	if err != nil {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = http.DetectContentType(b)
	}
	sum := sha256.Sum256(b)
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", `"`+hex.EncodeToString(sum[:12])+`"`)
	// ServeContent answers If-None-Match, ranges and HEAD.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}
