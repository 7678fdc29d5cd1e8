package translatetest

import (
	"math/rand"
	"testing"
)

func TestRandomIsAFunctionOfTheSeed(t *testing.T) {
	for seed := int64(0); seed < 20; seed++ {
		a := Random(rand.New(rand.NewSource(seed)), PropertyConfig(6)).String()
		b := Random(rand.New(rand.NewSource(seed)), PropertyConfig(6)).String()
		if a != b {
			t.Fatalf("seed %d gave two different worlds:\n%s\n---\n%s", seed, a, b)
		}
	}
}
