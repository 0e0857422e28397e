package workorder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// MaxPhoto bounds one photo's size.
const MaxPhoto = 8 << 20

// Photo is a picture a crew added to an order: the camera as they found
// it, the damage, the repaired mount.
type Photo struct {
	SHA256 string    `json:"sha256"` // names the file; the same picture twice is kept once
	Type   string    `json:"type"`   // image/jpeg or image/png
	Size   int       `json:"size"`
	At     time.Time `json:"at"`
	Who    string    `json:"who"`
	Note   string    `json:"note,omitempty"`
}

// photoTypes are the pictures accepted, by their content, not by what the
// client says.
var photoTypes = map[string]string{"image/jpeg": ".jpg", "image/png": ".png"}

// AddPhoto keeps a picture with order id. The file is written before the
// order records it, so an order never names a picture that is not there.
func (m *Manager) AddPhoto(id, who, note string, data []byte) (Photo, error) {
	if m.opts.PhotoDir == "" {
		return Photo{}, fmt.Errorf("%w: this hub keeps no photos (no data directory)", ErrBadRequest)
	}
	if who == "" || len(data) == 0 || len(data) > MaxPhoto || len(note) > 2000 {
		return Photo{}, fmt.Errorf("%w: a photo is 1 byte to %d MiB, with a note of at most 2000 bytes", ErrBadRequest, MaxPhoto>>20)
	}
	typ := http.DetectContentType(data)
	ext, ok := photoTypes[typ]
	if !ok {
		return Photo{}, fmt.Errorf("%w: a photo is a JPEG or PNG picture, not %s", ErrBadRequest, typ)
	}
	sum := sha256.Sum256(data)
	p := Photo{SHA256: hex.EncodeToString(sum[:]), Type: typ, Size: len(data), At: m.opts.Now(), Who: who, Note: note}
	if _, _, found := m.Order(id); !found {
		return Photo{}, ErrNotFound
	}
	if err := writeFileAtomic(m.photoPath(p.SHA256, ext), data); err != nil {
		return Photo{}, fmt.Errorf("workorder: keep photo: %w", err)
	}
	m.mu.Lock()
	e, ok := m.orders[id]
	if ok {
		o := &e.order
		o.Photos = append(o.Photos, p)
		m.record(e, Transition{At: p.At, Who: who, Action: ActPhoto, From: o.State, To: o.State, Note: "photo " + p.SHA256[:12] + ": " + note}, EventUpdate)
	}
	m.mu.Unlock()
	m.flush()
	if !ok {
		return Photo{}, ErrNotFound
	}
	return p, nil
}

// PhotoFile is the path of an order's photo, if the order has it.
func (m *Manager) PhotoFile(id, sha string) (path, typ string, ok bool) {
	o, _, found := m.Order(id)
	if !found {
		return "", "", false
	}
	for _, p := range o.Photos {
		if p.SHA256 == sha {
			return m.photoPath(sha, photoTypes[p.Type]), p.Type, true
		}
	}
	return "", "", false
}

func (m *Manager) photoPath(sha, ext string) string {
	return filepath.Join(m.opts.PhotoDir, sha[:2], sha+ext)
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a crash leaves the whole picture or none.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".photo-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
