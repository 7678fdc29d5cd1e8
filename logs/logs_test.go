package logs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestFileSinkRotatesBySize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "azure-npm.log")
	logger, err := New(Config{File: path, MaxSizeMB: 1, MaxBackups: 2})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 1000)
	// ~3 MB of log lines through a 1 MB limit must rotate at least twice and
	// keep no more than MaxBackups old files.
	for i := 0; i < 3000; i++ {
		logger.Info("rule added", zap.String("payload", line), zap.Int("i", i))
	}
	_ = logger.Sync()
	// lumberjack prunes old backups in a goroutine: give it a moment.
	var backups int
	var entries []os.DirEntry
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if entries, err = os.ReadDir(dir); err != nil {
			t.Fatal(err)
		}
		backups = 0
		for _, e := range entries {
			if e.Name() != "azure-npm.log" && strings.HasPrefix(e.Name(), "azure-npm-") {
				backups++
			}
		}
		if backups == 2 || time.Now().After(deadline) {
			break
		}
	}
	if backups != 2 {
		t.Fatalf("want 2 rotated backups (MaxBackups), got %d: %v", backups, entries)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 1<<20 {
		t.Fatalf("current file is %d bytes, over the 1 MiB rotation size", st.Size())
	}
}

func TestUnwritableDirectoryFallsBackToStderr(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A path below a regular file can never be created, even by root.
	path := filepath.Join(blocker, "azure-npm.log")

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	orig := os.Stderr
	os.Stderr = w
	logger, err := New(Config{File: path})
	os.Stderr = orig
	if err != nil {
		t.Fatalf("an unwritable log file must not be an error: %v", err)
	}
	logger.Info("still logging")
	_ = logger.Sync()
	w.Close()
	buf := make([]byte, 4096)
	n, _ := r.Read(buf)
	out := string(buf[:n])
	if strings.Count(out, "log file not writable") != 1 {
		t.Fatalf("want exactly one fallback warning on stderr, got %q", out)
	}
	if !strings.Contains(out, "still logging") {
		t.Fatalf("later lines must reach stderr, got %q", out)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"zero value is valid", Config{}, ""},
		{"debug console", Config{Level: "debug", Format: "console"}, ""},
		{"bad level", Config{Level: "loud"}, `log level "loud"`},
		{"bad format", Config{Format: "xml"}, `log format "xml"`},
		{"negative size", Config{MaxSizeMB: -1}, "must not be negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("want error containing %q, got %v", tc.wantErr, err)
			}
		})
	}
}

func TestDebugLevelFiltersBelowInfo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	for _, tc := range []struct {
		level     string
		wantDebug bool
	}{{"info", false}, {"debug", true}} {
		logger, err := New(Config{File: path, Level: tc.level})
		if err != nil {
			t.Fatal(err)
		}
		logger.Debug("debug-line-" + tc.level)
		_ = logger.Sync()
		data, _ := os.ReadFile(path)
		if got := strings.Contains(string(data), "debug-line-"+tc.level); got != tc.wantDebug {
			t.Fatalf("level %s: debug line present=%v, want %v", tc.level, got, tc.wantDebug)
		}
	}
}
