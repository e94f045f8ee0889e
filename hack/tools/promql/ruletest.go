package main

// Alerting-rule unit tests in promtool's test-file format (the `alert_rule_test` part), run the way
// promtool's `test rules` runs them: the input series loaded step by step into Prometheus's test
// storage, every rule group evaluated at each evaluation step by the rule manager, and the alerts
// firing at each `eval_time` compared with the expected ones. Unlike promtool, an expected alert's
// annotations are compared only when the test names some, so a test states the labels it is about
// without repeating the chart's prose.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/promqltest"
	promrules "github.com/prometheus/prometheus/rules"
	"go.yaml.in/yaml/v3"
)

type testFile struct {
	RuleFiles          []string       `yaml:"rule_files"`
	EvaluationInterval model.Duration `yaml:"evaluation_interval"`
	Tests              []testGroup    `yaml:"tests"`
}

type testGroup struct {
	Name           string          `yaml:"name"`
	Interval       model.Duration  `yaml:"interval"`
	InputSeries    []inputSeries   `yaml:"input_series"`
	AlertRuleTests []alertTestCase `yaml:"alert_rule_test"`
}

type inputSeries struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

type alertTestCase struct {
	EvalTime  model.Duration `yaml:"eval_time"`
	Alertname string         `yaml:"alertname"`
	ExpAlerts []expAlert     `yaml:"exp_alerts"`
}

type expAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

// alert is one firing alert as the report shows it.
type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type caseResult struct {
	Test      string  `json:"test"`
	Alertname string  `json:"alertname"`
	EvalTime  string  `json:"eval_time"`
	Expected  []alert `json:"expected"`
	Got       []alert `json:"got"`
	Error     string  `json:"error,omitempty"`
}

// ruleTests runs every test group of a test file; the report has one entry per alert test case.
func ruleTests(path string) ([]caseResult, bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	var file testFile
	decoder := yaml.NewDecoder(bytes.NewReader(data))
	decoder.KnownFields(true)
	if err := decoder.Decode(&file); err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	if file.EvaluationInterval == 0 {
		file.EvaluationInterval = model.Duration(time.Minute)
	}
	ruleFiles := make([]string, len(file.RuleFiles))
	for i, name := range file.RuleFiles {
		if !filepath.IsAbs(name) {
			name = filepath.Join(filepath.Dir(path), name)
		}
		ruleFiles[i] = name
	}
	results := []caseResult{}
	ok := true
	for _, group := range file.Tests {
		cases, err := runGroup(group, time.Duration(file.EvaluationInterval), ruleFiles)
		if err != nil {
			return nil, false, fmt.Errorf("test %q: %w", group.Name, err)
		}
		for _, result := range cases {
			ok = ok && result.Error == ""
		}
		results = append(results, cases...)
	}
	return results, ok, nil
}

// runGroup loads one group's series, evaluates the rules from time 0 to its last eval_time, and
// checks each alert test case at the evaluation step that covers its eval_time.
func runGroup(group testGroup, evalInterval time.Duration, ruleFiles []string) ([]caseResult, error) {
	if group.Interval == 0 {
		group.Interval = model.Duration(evalInterval)
	}
	var load strings.Builder
	fmt.Fprintf(&load, "load %s\n", time.Duration(group.Interval))
	for _, series := range group.InputSeries {
		fmt.Fprintf(&load, "  %s %s\n", series.Series, series.Values)
	}
	suite, err := promqltest.NewLazyLoader(load.String(), promqltest.LazyLoaderOpts{Parser: promql})
	if err != nil {
		return nil, err
	}
	defer suite.Close()
	suite.SubqueryInterval = evalInterval

	manager := promrules.NewManager(&promrules.ManagerOptions{
		QueryFunc:    promrules.EngineQueryFunc(suite.QueryEngine(), suite.Storage()),
		AppendableV2: suite.Storage(),
		Context:      context.Background(),
		NotifyFunc:   func(context.Context, string, ...*promrules.Alert) {},
		Logger:       promslog.NewNopLogger(),
		Parser:       promql,
	})
	loaded, errs := manager.LoadGroups(evalInterval, labels.EmptyLabels(), "", nil, false, ruleFiles...)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	names := make([]string, 0, len(loaded))
	for name := range loaded {
		names = append(names, name)
	}
	sort.Strings(names)
	groups := make([]*promrules.Group, 0, len(loaded))
	known := map[string]bool{}
	for _, name := range names {
		groups = append(groups, loaded[name])
		for _, rule := range loaded[name].Rules() {
			if alerting, isAlert := rule.(*promrules.AlertingRule); isAlert {
				// As promtool does: the ALERTS series exist from the first evaluation.
				alerting.SetRestored(true)
				known[alerting.Name()] = true
			}
		}
	}

	cases := append([]alertTestCase(nil), group.AlertRuleTests...)
	sort.SliceStable(cases, func(i, j int) bool { return cases[i].EvalTime < cases[j].EvalTime })
	results := make([]caseResult, 0, len(cases))
	start := time.Unix(0, 0).UTC()
	next := 0
	for ts := start; next < len(cases); ts = ts.Add(evalInterval) {
		var evalErr error
		suite.WithSamplesTill(ts, func(err error) {
			if err != nil {
				evalErr = err
				return
			}
			for _, g := range groups {
				g.Eval(suite.Context(), ts)
				for _, rule := range g.Rules() {
					if rule.LastError() != nil {
						evalErr = fmt.Errorf("rule %s at %s: %w", rule.Name(), ts.Sub(start), rule.LastError())
					}
				}
			}
		})
		if evalErr != nil {
			return nil, evalErr
		}
		for next < len(cases) && time.Duration(cases[next].EvalTime) < ts.Add(evalInterval).Sub(start) {
			results = append(results, checkCase(group.Name, cases[next], groups, known))
			next++
		}
	}
	return results, nil
}

// checkCase compares the alerts firing now with what one test case expects.
func checkCase(test string, tc alertTestCase, groups []*promrules.Group, known map[string]bool) caseResult {
	result := caseResult{
		Test: test, Alertname: tc.Alertname, EvalTime: tc.EvalTime.String(),
		Expected: []alert{}, Got: []alert{},
	}
	if !known[tc.Alertname] {
		result.Error = "no alerting rule has this name"
		return result
	}
	compareAnnotations := false
	for _, exp := range tc.ExpAlerts {
		labels := map[string]string{"alertname": tc.Alertname}
		for name, value := range exp.ExpLabels {
			labels[name] = value
		}
		result.Expected = append(result.Expected, alert{Labels: labels, Annotations: exp.ExpAnnotations})
		compareAnnotations = compareAnnotations || len(exp.ExpAnnotations) > 0
	}
	for _, g := range groups {
		for _, rule := range g.Rules() {
			alerting, isAlert := rule.(*promrules.AlertingRule)
			if !isAlert || alerting.Name() != tc.Alertname {
				continue
			}
			for _, active := range alerting.ActiveAlerts() {
				if active.State != promrules.StateFiring {
					continue
				}
				got := alert{Labels: active.Labels.Map()}
				if compareAnnotations {
					got.Annotations = active.Annotations.Map()
				}
				result.Got = append(result.Got, got)
			}
		}
	}
	if !sameAlerts(result.Expected, result.Got) {
		result.Error = "the firing alerts differ from the expected ones"
	}
	return result
}

// sameAlerts compares two lists of alerts as multisets.
func sameAlerts(expected, got []alert) bool {
	key := func(a alert) string {
		return labels.FromMap(a.Labels).String() + labels.FromMap(a.Annotations).String()
	}
	keys := func(list []alert) []string {
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = key(a)
		}
		sort.Strings(out)
		return out
	}
	return slices.Equal(keys(expected), keys(got))
}
