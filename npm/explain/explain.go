// Package explain answers "is this traffic allowed on this node, and why":
// the request/response of `azure-npm explain`, its evaluation against the
// daemon's desired state, and the text an operator reads.
package explain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/localsock"
	"github.com/open-acn/acn/npm/policy"
)

// Path is the endpoint of explain queries on the agent's local socket.
const Path = "/explain"

// Request names a connection: endpoints as NAMESPACE/POD or an IP.
type Request struct {
	From     string          `json:"from"`
	To       string          `json:"to"`
	Port     uint16          `json:"port"`
	Protocol policy.Protocol `json:"protocol"`
}

// ParseRequest validates the command-line form of a request.
func ParseRequest(from, to, port string) (Request, error) {
	if from == "" || to == "" || port == "" {
		return Request{}, errors.New("--from, --to and --port are required")
	}
	for _, ep := range []string{from, to} {
		if _, err := netip.ParseAddr(ep); err == nil {
			continue
		}
		if parts := strings.Split(ep, "/"); len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return Request{}, fmt.Errorf("%q: want NAMESPACE/POD or an IP address", ep)
		}
	}
	proto := policy.TCP
	num := port
	if i := strings.IndexByte(port, '/'); i >= 0 {
		num = port[:i]
		switch strings.ToUpper(port[i+1:]) {
		case "TCP":
		case "UDP":
			proto = policy.UDP
		case "SCTP":
			proto = policy.SCTP
		default:
			return Request{}, fmt.Errorf("protocol %q: want tcp, udp or sctp", port[i+1:])
		}
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return Request{}, fmt.Errorf("port %q: want 1-65535", num)
	}
	return Request{From: from, To: to, Port: uint16(n), Protocol: proto}, nil
}

// Values encodes the request as URL query parameters.
func (r Request) Values() url.Values {
	return url.Values{"from": {r.From}, "to": {r.To}, "port": {strconv.Itoa(int(r.Port))}, "protocol": {string(r.Protocol)}}
}

// RequestFromValues decodes Values.
func RequestFromValues(v url.Values) (Request, error) {
	port := v.Get("port")
	if p := v.Get("protocol"); p != "" {
		port += "/" + p
	}
	return ParseRequest(v.Get("from"), v.Get("to"), port)
}

// Direction is the decision of one side of the connection.
type Direction struct {
	Endpoint string   `json:"endpoint,omitempty"` // local pod evaluated; "" = not a selected pod of this node
	Isolated bool     `json:"isolated"`
	Allowed  bool     `json:"allowed"`
	Policies []string `json:"policies,omitempty"` // policies isolating the endpoint
	Policy   string   `json:"policy,omitempty"`   // the policy whose rule decided
	Rule     string   `json:"rule,omitempty"`     // that rule, in words
	// Tier (Admin, NetworkPolicy, Baseline), Priority and Action (Accept,
	// Deny, Pass) of the deciding rule; Passed: the Admin-tier
	// ClusterNetworkPolicy whose Pass rule handed the decision on.
	Tier     string   `json:"tier,omitempty"`
	Priority int32    `json:"priority,omitempty"`
	Action   string   `json:"action,omitempty"`
	Passed   string   `json:"passed,omitempty"`
	Objects  []Object `json:"objects,omitempty"` // kernel objects implementing the policies
}

// Object is a kernel object implementing a policy.
type Object struct {
	Policy  string `json:"policy"`
	Family  string `json:"family,omitempty"` // "ipv4", "ipv6", or "" when not per family
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Comment string `json:"comment,omitempty"`
}

// Response is the daemon's answer.
type Response struct {
	Node     string    `json:"node"`
	Src      string    `json:"src"`
	Dst      string    `json:"dst"`
	Port     uint16    `json:"port"`
	Protocol string    `json:"protocol"`
	Allowed  bool      `json:"allowed"`
	Egress   Direction `json:"egress"`
	Ingress  Direction `json:"ingress"`
}

// Resolver maps NAMESPACE/POD to the pod's IP (from the daemon's cache).
type Resolver func(namespace, name string) (netip.Addr, error)

// Evaluate answers req from the desired state (as programmed) and the
// dataplane's object names.
func Evaluate(node string, st *policy.State, objects func(policyKey string) []dataplane.Object, req Request, resolve Resolver) (Response, error) {
	src, err := resolveEndpoint(req.From, resolve)
	if err != nil {
		return Response{}, err
	}
	dst, err := resolveEndpoint(req.To, resolve)
	if err != nil {
		return Response{}, err
	}
	v := st.Evaluate(policy.Packet{Src: src, Dst: dst, Protocol: req.Protocol, Port: req.Port})
	resp := Response{Node: node, Src: src.String(), Dst: dst.String(), Port: req.Port, Protocol: string(req.Protocol), Allowed: v.Allowed}
	resp.Egress = direction(st, objects, v.Egress, policy.Egress)
	resp.Ingress = direction(st, objects, v.Ingress, policy.Ingress)
	return resp, nil
}

func direction(st *policy.State, objects func(string) []dataplane.Object, dv policy.DirVerdict, d policy.Direction) Direction {
	out := Direction{Endpoint: dv.Endpoint, Isolated: dv.Isolated, Allowed: dv.Allowed, Policies: dv.Policies, Policy: dv.Policy, Passed: dv.Passed}
	if dv.Policy != "" {
		out.Tier, out.Action = dv.Tier.String(), dv.Action.String()
		if p := st.Policies[dv.Policy]; p != nil && dv.Rule < len(p.Rules(d)) {
			r := p.Rules(d)[dv.Rule]
			out.Rule = r.Describe()
			out.Priority = p.Priority
		}
	}
	if objects != nil {
		for _, k := range dv.Policies {
			for _, o := range objects(k) {
				fam := ""
				switch o.Family {
				case policy.IPv4:
					fam = "ipv4"
				case policy.IPv6:
					fam = "ipv6"
				}
				out.Objects = append(out.Objects, Object{Policy: k, Family: fam, Kind: o.Kind, Name: o.Name, Comment: o.Comment})
			}
		}
	}
	return out
}

func resolveEndpoint(s string, resolve Resolver) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), nil
	}
	ns, name, _ := strings.Cut(s, "/")
	if resolve == nil {
		return netip.Addr{}, fmt.Errorf("%s: cannot resolve pods here", s)
	}
	return resolve(ns, name)
}

// Query asks the agent on its local socket and prints the answer.
func Query(ctx context.Context, socket string, req Request, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body, err := localsock.Get(ctx, localsock.Client(socket, 10*time.Second), socket, Path+"?"+req.Values().Encode())
	if err != nil {
		return err
	}
	var r Response
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("agent at %s: bad answer: %w", socket, err)
	}
	Print(out, r)
	return nil
}

// Print writes the operator-facing explanation.
func Print(w io.Writer, r Response) {
	verdict := "DENIED"
	if r.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(w, "%s: %s -> %s %d/%s (node %s)\n", verdict, r.Src, r.Dst, r.Port, r.Protocol, r.Node)
	printDir(w, "egress at source", r.Egress)
	printDir(w, "ingress at destination", r.Ingress)
}

func printDir(w io.Writer, title string, d Direction) {
	if d.Endpoint == "" {
		fmt.Fprintf(w, "  %s: not a policy-selected pod on this node: not filtered here\n", title)
		return
	}
	if d.Passed != "" {
		fmt.Fprintf(w, "  %s: %s: Admin tier %s passed it on to the NetworkPolicy tier\n", title, d.Endpoint, d.Passed)
	}
	switch {
	case d.Policy != "" && d.Tier != "" && d.Tier != policy.TierNetworkPolicy.String():
		verdict := map[string]string{"Accept": "accepted", "Deny": "denied", "Pass": "passed on to the default (allowed)"}[d.Action]
		fmt.Fprintf(w, "  %s: %s %s by %s (%s tier, priority %d), %s rule: %s\n", title, d.Endpoint, verdict, d.Policy, d.Tier, d.Priority, d.Action, d.Rule)
	case !d.Isolated:
		fmt.Fprintf(w, "  %s: %s: no policy decides in this direction: open\n", title, d.Endpoint)
	case d.Allowed:
		fmt.Fprintf(w, "  %s: %s allowed by %s, rule: %s\n", title, d.Endpoint, d.Policy, d.Rule)
	default:
		fmt.Fprintf(w, "  %s: %s denied: %s\n", title, d.Endpoint, policy.DescribeDeny(d.Policies))
	}
	for _, o := range d.Objects {
		fam := ""
		if o.Family != "" {
			fam = o.Family + " "
		}
		fmt.Fprintf(w, "    %s: %s%s %s  # %s\n", o.Policy, fam, o.Kind, o.Name, o.Comment)
	}
}
