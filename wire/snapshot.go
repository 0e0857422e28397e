package wire

import (
	"bytes"
	"time"
)

// CommandSnapshot asks an agent for a picture of Devices[0], a camera with
// a snapshot URL; the answer is a Snapshot with Request = the command's ID.
const CommandSnapshot = "snapshot"

// MaxSnapshot bounds a snapshot's picture: with base64 it still fits
// MaxPayload.
const MaxSnapshot = 700 << 10

// Snapshot is an agent's answer to CommandSnapshot: the camera's JPEG, or
// why there is none.
type Snapshot struct {
	Header
	Request string `json:"request"` // the command's ID
	Device  string `json:"device"`
	JPEG    []byte `json:"jpeg,omitempty"` // base64 in JSON
	Error   string `json:"error,omitempty"`
}

// jpegMagic starts every JPEG file.
var jpegMagic = []byte{0xFF, 0xD8, 0xFF}

func (s *Snapshot) validate(agent string, now time.Time) error {
	if err := s.Header.validate(agent, now); err != nil {
		return err
	}
	if err := ValidID(s.Request); err != nil {
		return reject(RejectInvalid, "snapshot request: %v", err)
	}
	if err := ValidID(s.Device); err != nil {
		return reject(RejectInvalid, "snapshot device: %v", err)
	}
	if err := checkLen("snapshot error", s.Error, MaxDetailLen); err != nil {
		return err
	}
	switch {
	case (len(s.JPEG) == 0) == (s.Error == ""):
		return reject(RejectInvalid, "a snapshot has a picture or an error, not both or neither")
	case len(s.JPEG) > MaxSnapshot:
		return reject(RejectTooLarge, "snapshot of %d bytes exceeds %d", len(s.JPEG), MaxSnapshot)
	case len(s.JPEG) > 0 && !bytes.HasPrefix(s.JPEG, jpegMagic):
		return reject(RejectInvalid, "snapshot is not a JPEG picture")
	}
	return nil
}
