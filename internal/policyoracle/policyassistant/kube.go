package policyassistant

// Helpers of policy-assistant's pkg/kube and pkg/utils that the matcher
// uses, copied unchanged (pkg/utils' DoOrDie panics instead of exiting).

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"

	"github.com/mattfenwick/collections/pkg/slice"
	"github.com/pkg/errors"
	"golang.org/x/exp/maps"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func doOrDie(err error) {
	if err != nil {
		panic(fmt.Sprintf("%+v", err))
	}
}

func jsonStringNoIndent(obj interface{}) string {
	bytes, err := json.Marshal(obj)
	doOrDie(errors.Wrapf(err, "unable to marshal json"))
	return string(bytes)
}

func IsMatchExpressionMatchForLabels(labels map[string]string, exp metav1.LabelSelectorRequirement) bool {
	switch exp.Operator {
	case metav1.LabelSelectorOpIn:
		val, ok := labels[exp.Key]
		if !ok {
			return false
		}
		for _, v := range exp.Values {
			if v == val {
				return true
			}
		}
		return false
	case metav1.LabelSelectorOpNotIn:
		val, ok := labels[exp.Key]
		if !ok {
			// see https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#resources-that-support-set-based-requirements
			//   even for NotIn -- if the key isn't there, it's not a match
			return false
		}
		for _, v := range exp.Values {
			if v == val {
				return false
			}
		}
		return true
	case metav1.LabelSelectorOpExists:
		_, ok := labels[exp.Key]
		return ok
	case metav1.LabelSelectorOpDoesNotExist:
		_, ok := labels[exp.Key]
		return !ok
	default:
		panic("invalid operator")
	}
}

// IsLabelsMatchLabelSelector matches labels to a kube LabelSelector.
// From the docs:
// > A label selector is a label query over a set of resources. The result of matchLabels and
// > matchExpressions are ANDed. An empty label selector matches all objects. A null
// > label selector matches no objects.
func IsLabelsMatchLabelSelector(labels map[string]string, labelSelector metav1.LabelSelector) bool {
	// From the docs: "The requirements are ANDed."
	//   Therefore, all MatchLabels must be matched.
	for key, val := range labelSelector.MatchLabels {
		if labels[key] != val {
			return false
		}
	}

	// From the docs: "The requirements are ANDed."
	//   Therefore, all MatchExpressions must be matched.
	for _, exp := range labelSelector.MatchExpressions {
		isMatch := IsMatchExpressionMatchForLabels(labels, exp)
		if !isMatch {
			return false
		}
	}

	// From the docs: "An empty label selector matches all objects."
	return true
}

func IsLabelSelectorEmpty(l metav1.LabelSelector) bool {
	return len(l.MatchLabels) == 0 && len(l.MatchExpressions) == 0
}

// SerializeLabelSelector deterministically converts a metav1.LabelSelector
// into a string
func SerializeLabelSelector(ls metav1.LabelSelector) string {
	keyVals := slice.Map(func(key string) string {
		return fmt.Sprintf("%s: %s", key, ls.MatchLabels[key])
	}, slice.Sort(maps.Keys(ls.MatchLabels)))
	// this looks weird -- we're using an array to make the order deterministic
	return jsonStringNoIndent([]interface{}{"MatchLabels", keyVals, "MatchExpression", ls.MatchExpressions})
}

func LabelSelectorTableLines(selector metav1.LabelSelector) string {
	if IsLabelSelectorEmpty(selector) {
		return "all"
	}
	var lines []string
	if len(selector.MatchLabels) > 0 {
		for _, key := range slice.Sort(maps.Keys(selector.MatchLabels)) {
			val := selector.MatchLabels[key]
			lines = append(lines, fmt.Sprintf("   %s = %s", key, val))
		}
	}
	if len(selector.MatchExpressions) > 0 {
		sortedMatchExpressions := slice.SortOn(
			func(l metav1.LabelSelectorRequirement) string { return l.Key },
			selector.MatchExpressions)
		for _, exp := range sortedMatchExpressions {
			lines = append(lines, fmt.Sprintf("   %s %s %+v", exp.Key, exp.Operator, slice.Sort(exp.Values)))
		}
	}
	return strings.Join(lines, "\n")
}

func IsIPInCIDR(ip string, cidr string) (bool, error) {
	_, cidrNet, err := net.ParseCIDR(cidr)
	if err != nil {
		return false, errors.Wrapf(err, "unable to parse CIDR '%s'", cidr)
	}
	trafficIP := net.ParseIP(ip)
	if trafficIP == nil {
		return false, errors.Errorf("unable to parse IP '%s'", ip)
	}
	return cidrNet.Contains(trafficIP), nil
}

func IsIPAddressMatchForIPBlock(ip string, ipBlock *networkingv1.IPBlock) (bool, error) {
	isInCidr, err := IsIPInCIDR(ip, ipBlock.CIDR)
	if err != nil {
		return false, err
	}
	if !isInCidr {
		return false, nil
	}
	for _, except := range ipBlock.Except {
		isInExcept, err := IsIPInCIDR(ip, except)
		if err != nil {
			return false, err
		}
		if isInExcept {
			return false, nil
		}
	}
	return true, nil
}
