package procstat

import (
	"os"
	"runtime"
	"testing"
)

func TestReadsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc: Linux only")
	}
	// Burn a little CPU so the counter has moved.
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i
	}
	_ = x
	if cpu := CPUSeconds(os.Getpid()); cpu <= 0 {
		t.Errorf("CPUSeconds of this process = %v, want > 0", cpu)
	}
	rss, hwm := MemKiB(os.Getpid())
	if rss <= 0 || hwm < rss {
		t.Errorf("MemKiB = rss %d, hwm %d: want 0 < rss <= hwm", rss, hwm)
	}
	if cpu := CPUSeconds(-1); cpu != 0 {
		t.Errorf("CPUSeconds of no process = %v, want 0", cpu)
	}
}
