package metricstore

import (
	"testing"

	"github.com/citywatch/citywatch/wire"
)

func TestPartialWriteDropped(t *testing.T) {
	tests := []struct {
		msg  string
		want int
	}{
		{`partial write: points beyond retention policy dropped=3`, 3},
		{`partial write: field type conflict: input field "fps" on measurement "device_health" is type integer, already exists as type float dropped=1`, 1},
		{`partial write: unable to parse 'x': missing fields dropped=0`, 10}, // count unknown
		{`partial write: dropped=11`, 10}, // more than sent: distrust
		{`unable to parse 'x': missing fields`, 10},
		{`partial write: max-values-per-tag limit exceeded (100000/100000): measurement="device_health" tag="device" value="x" dropped=2`, 2},
		{``, 10},
	}
	for _, tt := range tests {
		if got := partialWriteDropped(tt.msg, 10); got != tt.want {
			t.Errorf("partialWriteDropped(%q, 10) = %d, want %d", tt.msg, got, tt.want)
		}
	}
}

func TestStatusCodes(t *testing.T) {
	tests := []struct {
		status wire.Status
		code   uint8
	}{
		{wire.StatusOnline, 0}, {wire.StatusDegraded, 1}, {wire.StatusOffline, 2},
		{wire.StatusUnknown, 3}, {wire.StatusUnreachable, 4}, {"from-the-future", 3},
	}
	for _, tt := range tests {
		if got := statusCode(tt.status); got != tt.code {
			t.Errorf("statusCode(%q) = %d, want %d (the stored schema)", tt.status, got, tt.code)
		}
	}
}
