// Command promql-check validates Prometheus rule files and PromQL expressions with Prometheus's
// own parser (model/rulefmt and promql/parser), which is what promtool's `check rules` runs, and
// evaluates alerting rules against synthetic series with Prometheus's rule manager and PromQL
// engine, which is what promtool's `test rules` runs, without promtool's service-discovery
// dependencies.
//
//	promql-check --version
//	promql-check rules FILE...  # rule groups files, strict: unknown fields are errors
//	promql-check exprs          # a JSON array of expressions on stdin
//	promql-check test FILE      # a promtool rule unit-test file (alert_rule_test only)
//
// `rules` and `exprs` print a JSON array, one entry per rule or expression, with the metric names
// the expression selects, and exit 1 when any file, rule or expression is invalid. `test` prints
// one entry per alert_rule_test case, the firing alerts expected and got, and exits 1 when any
// case fails.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

const prometheusModule = "github.com/prometheus/prometheus"

// source is the digest of this module's files, stamped by hack/tools/install.py.
var source = "unknown"

type checked struct {
	File    string   `json:"file,omitempty"`
	Group   string   `json:"group,omitempty"`
	Alert   string   `json:"alert,omitempty"`
	Record  string   `json:"record,omitempty"`
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
	Error   string   `json:"error,omitempty"`
}

var promql = parser.NewParser(parser.Options{})

// metrics are the metric names an expression selects, sorted and without repeats.
func metrics(expr parser.Expr) []string {
	seen := map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if selector, ok := node.(*parser.VectorSelector); ok {
			name := selector.Name
			for _, m := range selector.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					name = m.Value
				}
			}
			if name != "" {
				seen[name] = true
			}
		}
		return nil
	})
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func check(expr string) checked {
	result := checked{Expr: expr, Metrics: []string{}}
	parsed, err := promql.ParseExpr(expr)
	if err != nil {
		result.Error = err.Error()
		return result
	}
	result.Metrics = metrics(parsed)
	return result
}

func rules(files []string) ([]checked, bool) {
	results := []checked{}
	ok := true
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	for _, file := range files {
		groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, promql, logger)
		for _, err := range errs {
			ok = false
			results = append(results, checked{File: file, Metrics: []string{}, Error: err.Error()})
		}
		if groups == nil {
			continue
		}
		for _, group := range groups.Groups {
			for _, rule := range group.Rules {
				result := check(rule.Expr)
				result.File, result.Group, result.Alert, result.Record = file, group.Name, rule.Alert, rule.Record
				ok = ok && result.Error == ""
				results = append(results, result)
			}
		}
	}
	return results, ok
}

func exprs(input io.Reader) ([]checked, bool, error) {
	var list []string
	if err := json.NewDecoder(input).Decode(&list); err != nil {
		return nil, false, fmt.Errorf("stdin: a JSON array of strings: %w", err)
	}
	results := make([]checked, 0, len(list))
	ok := true
	for _, expr := range list {
		result := check(expr)
		ok = ok && result.Error == ""
		results = append(results, result)
	}
	return results, ok, nil
}

func version() string {
	if info, found := debug.ReadBuildInfo(); found {
		for _, dep := range info.Deps {
			if dep.Path == prometheusModule {
				return dep.Version
			}
		}
	}
	return "unknown"
}

// report prints a command's results as JSON and exits 2 on a usage or input error, 1 when any
// result failed.
func report[T any](results []T, ok bool, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

func main() {
	usage := "usage: promql-check --version | rules FILE... | exprs < expressions.json | test FILE"
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "--version":
		fmt.Printf("promql-check prometheus %s source %s\n", version(), source)
	case "rules":
		if len(os.Args) < 3 {
			fmt.Fprintln(os.Stderr, usage)
			os.Exit(2)
		}
		results, ok := rules(os.Args[2:])
		report(results, ok, nil)
	case "exprs":
		report(exprs(os.Stdin))
	case "test":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, usage)
			os.Exit(2)
		}
		report(ruleTests(os.Args[2]))
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
}
