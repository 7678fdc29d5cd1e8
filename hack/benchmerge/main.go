// Command benchmerge joins the result files of the benchmark programs into
// out/bench/results.json and prints them as one table.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/open-acn/acn/internal/benchfmt"
)

func main() {
	out := flag.String("out", "out/bench/results.json", "merged result file")
	flag.Parse()
	var all []benchfmt.Result
	for _, path := range flag.Args() {
		rs, err := benchfmt.ReadJSON(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchmerge:", err)
			os.Exit(1)
		}
		all = append(all, rs...)
	}
	if err := benchfmt.WriteJSON(*out, all); err != nil {
		fmt.Fprintln(os.Stderr, "benchmerge:", err)
		os.Exit(1)
	}
	fmt.Println()
	benchfmt.PrintTable(os.Stdout, all)
	fmt.Printf("\n%d results written to %s\n", len(all), *out)
}
