package testenv

import "runtime"

// LiveHeap is the heap in use after a collection: what the memory tests
// and benchmarks subtract, before and after building what they measure.
func LiveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
