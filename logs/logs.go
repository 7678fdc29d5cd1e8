// Package logs builds the zap logger every binary of the project uses.
//
// One binary, one file: azure-npm, azure-vnet and azure-vnet-ipam each own
// their default path, so two processes never rotate the same file. Rotation
// is size based and done by lumberjack. A log file that cannot be opened
// never stops the binary: the logger falls back to stderr and says so once.
package logs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"
)

// DefaultNPMFile is azure-npm's default log file (the CNI plugins' are
// per platform: paths_*.go).
const DefaultNPMFile = "/var/log/azure-npm.log"

// Encodings and levels accepted in Config.
const (
	FormatJSON    = "json"
	FormatConsole = "console"
	LevelInfo     = "info"
	LevelDebug    = "debug"
)

// StderrTarget as Config.File logs to stderr only.
const StderrTarget = "stderr"

// Config selects where and how a binary logs. The zero value logs info-level
// JSON to stderr.
type Config struct {
	// File is the log file path; "" or "stderr" logs to stderr.
	File string
	// Level is "info" (default) or "debug".
	Level string
	// Format is "json" (default) or "console".
	Format string
	// MaxSizeMB rotates the file when it reaches this size (default 100).
	MaxSizeMB int
	// MaxBackups rotated files are kept (default 5).
	MaxBackups int
	// Stderr also copies every line to stderr (useful in containers).
	Stderr bool
}

// Validate reports the first mistake in cfg.
func (c Config) Validate() error {
	if _, err := ParseLevel(c.Level); err != nil {
		return err
	}
	switch c.Format {
	case "", FormatJSON, FormatConsole:
	default:
		return fmt.Errorf("log format %q: want %q or %q", c.Format, FormatJSON, FormatConsole)
	}
	if c.MaxSizeMB < 0 || c.MaxBackups < 0 {
		return fmt.Errorf("log rotation sizes must not be negative (maxSizeMB=%d, maxBackups=%d)", c.MaxSizeMB, c.MaxBackups)
	}
	return nil
}

// ParseLevel maps "info"/"debug" (case-insensitive, "" = info) to a zap level.
func ParseLevel(s string) (zapcore.Level, error) {
	switch strings.ToLower(s) {
	case "", LevelInfo:
		return zapcore.InfoLevel, nil
	case LevelDebug:
		return zapcore.DebugLevel, nil
	case "warn", "warning":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return zapcore.InfoLevel, fmt.Errorf("log level %q: want %q or %q", s, LevelInfo, LevelDebug)
}

// New builds the logger described by cfg. It returns an error only for an
// invalid cfg; an unwritable file falls back to stderr with one warning.
// Call Sync (or the returned logger's Sync) before exit.
func New(cfg Config) (*zap.Logger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	level, _ := ParseLevel(cfg.Level)
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if cfg.Format == FormatConsole {
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}

	stderr := zapcore.Lock(os.Stderr)
	var sinks []zapcore.WriteSyncer
	var fallbackErr error
	if cfg.File != "" && cfg.File != StderrTarget {
		if err := checkWritable(cfg.File); err != nil {
			fallbackErr = err
		} else {
			sinks = append(sinks, zapcore.AddSync(&lumberjack.Logger{
				Filename:   cfg.File,
				MaxSize:    orDefault(cfg.MaxSizeMB, 100),
				MaxBackups: orDefault(cfg.MaxBackups, 5),
				Compress:   false,
			}))
		}
	}
	if len(sinks) == 0 || cfg.Stderr {
		sinks = append(sinks, stderr)
	}
	logger := zap.New(zapcore.NewCore(enc, zapcore.NewMultiWriteSyncer(sinks...), level))
	if fallbackErr != nil {
		logger.Warn("log file not writable, logging to stderr instead", zap.String("file", cfg.File), zap.Error(fallbackErr))
	}
	return logger, nil
}

// checkWritable creates the directory if needed and opens the file for
// append, so a failure is seen now rather than silently on every write.
func checkWritable(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

func orDefault(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}
