package cnicmd

import (
	"encoding/json"
	"io"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/config"
)

// Invocation is what every command handler of both plugins works with,
// whatever the platform: the runtime's arguments, the parsed
// configuration, the log with the fields gathered for the command's one
// log line, the fault-injection hook and where the result goes.
type Invocation struct {
	Cmd  string // ADD, DEL, CHECK, GC, STATUS
	Args *skel.CmdArgs
	Cfg  *config.NetConf
	Log  *zap.Logger
	// Hook runs at each named step (nil: none; see cni/failpoint).
	Hook func(step string) error
	// Stdout receives the result (nil: os.Stdout).
	Stdout io.Writer
	// Notes are extra fields of the command's log line.
	Notes []zap.Field

	PodNamespace, PodName string // from CNI_ARGS
}

// Note adds a field to the command's log line.
func (c *Invocation) Note(f zap.Field) { c.Notes = append(c.Notes, f) }

// At runs the hook at step; an error stops the command there.
func (c *Invocation) At(step string) error {
	if c.Hook == nil {
		return nil
	}
	return c.Hook(step)
}

func (c *Invocation) stdout() io.Writer {
	if c.Stdout != nil {
		return c.Stdout
	}
	return os.Stdout
}

// Print writes res converted to the configuration's spec version.
func (c *Invocation) Print(res *types100.Result) error {
	return Print(c.stdout(), res, c.Cfg.CNIVersion)
}

// PrintStored writes a result kept in the state file, converted to the
// configuration's spec version.
func (c *Invocation) PrintStored(raw json.RawMessage) error {
	return PrintStored(c.stdout(), raw, c.Cfg.CNIVersion)
}

// PrevResult decodes the prevResult of CHECK into the current types.
func (c *Invocation) PrevResult() (*types100.Result, error) {
	if c.Cfg.RawPrevResult == nil {
		return nil, config.Invalid("prevResult: missing (CHECK needs the result of ADD)")
	}
	b, err := json.Marshal(c.Cfg.RawPrevResult)
	if err != nil {
		return nil, err
	}
	res, err := version.NewResult(c.Cfg.CNIVersion, b)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	return types100.NewResultFromResult(res)
}

// LogFields are the fields every command's log line starts with.
func (c *Invocation) LogFields(plugin string) []zap.Field {
	fields := []zap.Field{
		zap.String("plugin", plugin),
		zap.String("containerID", c.Args.ContainerID),
		zap.String("ifName", c.Args.IfName),
		zap.String("netns", c.Args.Netns),
		zap.String("network", c.Cfg.Name),
		zap.String("cniVersion", c.Cfg.CNIVersion),
	}
	if c.PodName != "" {
		fields = append(fields, zap.String("pod", c.PodNamespace+"/"+c.PodName))
	}
	return fields
}

// NewLogger calls newLogger for cfg (nil cfg: the defaults); nil
// function or result is a no-op logger.
func NewLogger(newLogger func(cfg *config.NetConf) *zap.Logger, cfg *config.NetConf) *zap.Logger {
	if newLogger == nil {
		return zap.NewNop()
	}
	if l := newLogger(cfg); l != nil {
		return l
	}
	return zap.NewNop()
}
