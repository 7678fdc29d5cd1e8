package procstat

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestReadsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc: Linux only")
	}
	// Burn CPU until the counter (in clock ticks) has moved; a loaded
	// machine may give this process little of it, so bound by time, not
	// by a fixed amount of work.
	x := 0
	for deadline := time.Now().Add(10 * time.Second); CPUSeconds(os.Getpid()) <= 0 && time.Now().Before(deadline); {
		for i := 0; i < 10_000_000; i++ {
			x += i
		}
	}
	_ = x
	if cpu := CPUSeconds(os.Getpid()); cpu <= 0 {
		t.Errorf("CPUSeconds of this process = %v after 10 s of work, want > 0", cpu)
	}
	rss, hwm := MemKiB(os.Getpid())
	if rss <= 0 || hwm < rss {
		t.Errorf("MemKiB = rss %d, hwm %d: want 0 < rss <= hwm", rss, hwm)
	}
	if cpu := CPUSeconds(-1); cpu != 0 {
		t.Errorf("CPUSeconds of no process = %v, want 0", cpu)
	}
}
