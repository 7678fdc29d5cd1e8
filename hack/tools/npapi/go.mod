// The conformance suite of sigs.k8s.io/network-policy-api (its
// conformance/ package's tests), built as a test binary by
// hack/build-tools.sh npapi for make e2e-real. A module of its own so the
// product's go.mod never depends on controller-runtime.
module github.com/open-acn/acn/hack/tools/npapi

go 1.26.8

require sigs.k8s.io/network-policy-api v0.3.0
