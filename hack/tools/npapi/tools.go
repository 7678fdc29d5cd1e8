//go:build tools

// Package tools pins the network-policy-api conformance suite.
package tools

import _ "sigs.k8s.io/network-policy-api/conformance"
