// status-check judges custom resources as automation does: with the kstatus library of
// sigs.k8s.io/cli-utils (what Flux's health checks and cli-utils' status poller compute), with
// Argo CD's resource health scripts, run by gopher-lua as Argo CD runs them, and with the success
// and failure conditions of an Argo Workflows resource template.
//
// Usage: status-check [--health-dir DIR] [--argo-success COND] [--argo-failure COND] < objects.json
//
// The input is a JSON array of objects. For each it prints one JSON line:
// {"name": ..., "kstatus": "InProgress|Current|Failed|Terminating|...", "kstatusMessage": ...,
// "health": {"status": ..., "message": ...}, "argo": "Succeeded|Failed|Running"}; "health" only
// when DIR holds <group>_<Kind>.lua (e.g. evs.cloudsnap.io_CloudSnapshot.lua) for the object's
// kind, "argo" only when a condition is given.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/tidwall/gjson"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

var source = "dev"

type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type verdict struct {
	Name           string  `json:"name"`
	KStatus        string  `json:"kstatus"`
	KStatusMessage string  `json:"kstatusMessage"`
	Health         *health `json:"health,omitempty"`
	Argo           string  `json:"argo,omitempty"`
}

func main() {
	healthDir := flag.String("health-dir", "", "directory of <group>_<Kind>.lua health scripts")
	argoSuccess := flag.String("argo-success", "", "an Argo Workflows resource template's successCondition")
	argoFailure := flag.String("argo-failure", "", "an Argo Workflows resource template's failureCondition")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Printf("status-check cli-utils %s gopher-lua %s gjson %s source %s\n",
			dependency("sigs.k8s.io/cli-utils"), dependency("github.com/yuin/gopher-lua"),
			dependency("github.com/tidwall/gjson"), source)
		return
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// apimachinery's decoder keeps integers int64, as unstructured objects hold them.
	var objects []map[string]interface{}
	if err := kjson.Unmarshal(data, &objects); err != nil {
		fail(fmt.Errorf("input is not a JSON array of objects: %w", err))
	}
	success, err := requirements(*argoSuccess)
	if err != nil {
		fail(fmt.Errorf("success condition %q: %w", *argoSuccess, err))
	}
	failure, err := requirements(*argoFailure)
	if err != nil {
		fail(fmt.Errorf("failure condition %q: %w", *argoFailure, err))
	}
	out := json.NewEncoder(os.Stdout)
	for _, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		result, err := status.Compute(u)
		if err != nil {
			fail(fmt.Errorf("%s: %w", u.GetName(), err))
		}
		v := verdict{Name: u.GetName(), KStatus: result.Status.String(), KStatusMessage: result.Message}
		if *healthDir != "" {
			script := filepath.Join(*healthDir, fmt.Sprintf("%s_%s.lua", u.GroupVersionKind().Group, u.GetKind()))
			if _, err := os.Stat(script); err == nil {
				h, err := runHealth(script, obj)
				if err != nil {
					fail(fmt.Errorf("%s: %s: %w", u.GetName(), script, err))
				}
				v.Health = h
			}
		}
		if *argoSuccess != "" || *argoFailure != "" {
			raw, err := json.Marshal(obj)
			if err != nil {
				fail(err)
			}
			v.Argo = argoPhase(raw, success, failure)
		}
		if err := out.Encode(v); err != nil {
			fail(err)
		}
	}
}

// runHealth runs a health script as Argo CD does: the object as the global `obj`, the script's
// return value a table with `status` and `message`.
func runHealth(script string, obj map[string]interface{}) (*health, error) {
	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
	} {
		state.Push(state.NewFunction(lib.open))
		state.Push(lua.LString(lib.name))
		state.Call(1, 0)
	}
	state.SetGlobal("obj", toLua(state, obj))
	code, err := os.ReadFile(script)
	if err != nil {
		return nil, err
	}
	if err := state.DoString(string(code)); err != nil {
		return nil, err
	}
	table, ok := state.Get(-1).(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("the script returned %s, not a table", state.Get(-1).Type())
	}
	h := &health{
		Status:  table.RawGetString("status").String(),
		Message: table.RawGetString("message").String(),
	}
	if h.Message == "nil" {
		h.Message = ""
	}
	valid := map[string]bool{"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true}
	if !valid[h.Status] {
		return nil, fmt.Errorf("status %q is not one Argo CD knows", h.Status)
	}
	return h, nil
}

// requirements parses a condition as Argo Workflows does: a Kubernetes label selector whose keys
// are gjson paths into the object (e.g. "status.phase == available").
func requirements(condition string) (labels.Requirements, error) {
	if condition == "" {
		return nil, nil
	}
	selector, err := labels.Parse(condition)
	if err != nil {
		return nil, err
	}
	reqs, _ := selector.Requirements()
	return reqs, nil
}

// gjsonLabels answers label lookups from an object's JSON, as the Argo Workflows executor's
// resource wait does (Has and Get are its; Lookup, which newer apimachinery asks for, is the two).
type gjsonLabels struct{ json []byte }

func (g gjsonLabels) Has(label string) bool   { return gjson.GetBytes(g.json, label).Exists() }
func (g gjsonLabels) Get(label string) string { return gjson.GetBytes(g.json, label).String() }
func (g gjsonLabels) Lookup(label string) (string, bool) {
	result := gjson.GetBytes(g.json, label)
	return result.String(), result.Exists()
}

// argoPhase is what a resource template waiting on the object concludes from it: Failed as soon
// as any failure requirement matches, Succeeded when every success requirement matches, else it
// keeps waiting (Running).
func argoPhase(raw []byte, success, failure labels.Requirements) string {
	object := gjsonLabels{json: raw}
	for _, req := range failure {
		if req.Matches(object) {
			return "Failed"
		}
	}
	for _, req := range success {
		if !req.Matches(object) {
			return "Running"
		}
	}
	return "Succeeded"
}

// toLua converts decoded JSON to Lua values the way Argo CD's conversion does: objects and
// arrays become tables (arrays 1-based), numbers, strings and booleans their Lua kinds.
func toLua(state *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case map[string]interface{}:
		table := state.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(state, item))
		}
		return table
	case []interface{}:
		table := state.NewTable()
		for _, item := range v {
			table.Append(toLua(state, item))
		}
		return table
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	case nil:
		return lua.LNil
	default:
		return lua.LString(strings.TrimSpace(fmt.Sprint(v)))
	}
}

// dependency is the version of a module this binary was built with.
func dependency(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == path {
				return dep.Version
			}
		}
	}
	return "unknown"
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "status-check:", err)
	os.Exit(1)
}
