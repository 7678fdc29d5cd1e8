package explain

import (
	"net/url"
	"strings"
	"testing"

	"github.com/open-acn/acn/npm/policy"
)

// FuzzRequestFromValues feeds arbitrary query strings to the parser of
// /explain requests: it never panics, every refusal says what is wrong,
// and every accepted request is well-formed and survives its own encoding.
func FuzzRequestFromValues(f *testing.F) {
	// The seed corpus is testdata/fuzz/FuzzRequestFromValues.
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, err := RequestFromValues(v)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("empty error for %q", raw)
			}
			return
		}
		if req.From == "" || req.To == "" || req.Port == 0 {
			t.Fatalf("accepted an incomplete request %+v from %q", req, raw)
		}
		switch req.Protocol {
		case policy.TCP, policy.UDP, policy.SCTP:
		default:
			t.Fatalf("accepted protocol %q from %q", req.Protocol, raw)
		}
		again, err := RequestFromValues(req.Values())
		if err != nil || again != req {
			t.Fatalf("%+v does not survive its encoding: %+v, %v", req, again, err)
		}
	})
}
