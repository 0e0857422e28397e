package fleet

import (
	"testing"
	"unsafe"
)

// The registry keeps a device record for every device of the city; the
// package doc promises it fits 112 bytes, the allocation class it is in.
func TestDeviceRecordSize(t *testing.T) {
	if n := unsafe.Sizeof(device{}); n > 112 {
		t.Errorf("device is %d bytes, more than 112", n)
	}
}
