package workorder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// MaxPhoto bounds one photo's size.
const MaxPhoto = 8 << 20

// Photo is a picture a crew added to an order: the camera as they found
// it, the damage, the repaired mount.
type Photo struct {
	SHA256 string    `json:"sha256"` // names the picture; the same picture twice is kept once
	Type   string    `json:"type"`   // image/jpeg or image/png
	Size   int       `json:"size"`
	At     time.Time `json:"at"`
	Who    string    `json:"who"`
	Note   string    `json:"note,omitempty"`
}

// photoTypes are the pictures accepted, by their content, not by what the
// client says.
var photoTypes = []string{"image/jpeg", "image/png"}

// AddPhoto keeps a picture with order id. The picture is stored before
// the order records it, so an order never names a picture that is not
// there; in a cluster the hub that took it stores it in the shared
// database and asks the hub keeping the orders to record it.
func (m *Manager) AddPhoto(id, who, note string, data []byte) (Photo, error) {
	if who == "" || len(data) == 0 || len(data) > MaxPhoto || len(note) > 2000 {
		return Photo{}, fmt.Errorf("%w: a photo is 1 byte to %d MiB, with a note of at most 2000 bytes", ErrBadRequest, MaxPhoto>>20)
	}
	typ := http.DetectContentType(data)
	if !isPhotoType(typ) {
		return Photo{}, fmt.Errorf("%w: a photo is a JPEG or PNG picture, not %s", ErrBadRequest, typ)
	}
	sum := sha256.Sum256(data)
	p := Photo{SHA256: hex.EncodeToString(sum[:]), Type: typ, Size: len(data), At: m.opts.Now(), Who: who, Note: note}
	if _, _, found := m.Order(id); !found {
		return Photo{}, ErrNotFound
	}
	if err := m.deps.Store.PutPhoto(p.SHA256, typ, data); err != nil {
		return Photo{}, fmt.Errorf("workorder: keep photo: %w", err)
	}
	if _, err := m.do(Command{Op: OpPhoto, ID: id, Who: who, Photo: &p}); err != nil {
		return Photo{}, err
	}
	return p, nil
}

// notePhoto records c's photo, already stored, on its order; called with
// the lock held, on the hub that keeps the orders.
func (m *Manager) notePhoto(c Command) (*entry, error) {
	e, ok := m.orders[c.ID]
	p := c.Photo
	if !ok {
		return nil, ErrNotFound
	}
	if p == nil || len(p.SHA256) != 2*sha256.Size || !isPhotoType(p.Type) {
		return nil, fmt.Errorf("%w: a photo command without a stored picture", ErrBadRequest)
	}
	o := &e.order
	o.Photos = append(o.Photos, *p)
	m.record(e, Transition{At: p.At, Who: c.Who, Action: ActPhoto, From: o.State, To: o.State, Note: "photo " + p.SHA256[:12] + ": " + p.Note}, EventUpdate)
	return e, nil
}

func isPhotoType(typ string) bool { return slices.Contains(photoTypes, typ) }

// Photo returns one of order id's photos and its type; ErrNotFound if
// the order has no such photo.
func (m *Manager) Photo(id, sha string) (data []byte, typ string, err error) {
	o, _, found := m.Order(id)
	if !found {
		return nil, "", ErrNotFound
	}
	for _, p := range o.Photos {
		if p.SHA256 == sha {
			data, err := m.deps.Store.Photo(sha)
			return data, p.Type, err
		}
	}
	return nil, "", ErrNotFound
}
