package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/zerodown/zerodown/internal/server/api"
	"github.com/zerodown/zerodown/internal/store"
)

type openAPIDoc struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]*schema `json:"schemas"`
	} `json:"components"`
}

type schema struct {
	Ref                  string             `json:"$ref"`
	Type                 string             `json:"type"`
	Required             []string           `json:"required"`
	Properties           map[string]*schema `json:"properties"`
	Items                *schema            `json:"items"`
	Enum                 []string           `json:"enum"`
	AdditionalProperties *bool              `json:"additionalProperties"`
}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc
}

// TestOpenAPIDescribesTheRoutes: every route is in the document with its
// role, and the document has no endpoint the server lacks.
func TestOpenAPIDescribesTheRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	f := newFixture(t)
	want := map[string]Role{}
	for _, rt := range f.srv.routes() {
		want[strings.ToLower(rt.method)+" "+rt.pattern] = rt.role
	}
	got := map[string]string{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			var op struct {
				Role string `json:"x-zerodown-role"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			got[method+" "+path] = op.Role
		}
	}
	for k, role := range want {
		if got[k] != role.String() {
			t.Errorf("route %s (role %s): the document has role %q", k, role, got[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("the document describes %s, which the server does not serve", k)
		}
	}
}

// TestOpenAPISchemasMatchTheTypes: each schema has exactly the JSON fields
// of its Go type, and requires exactly those always written (no
// omitempty).
func TestOpenAPISchemasMatchTheTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	types := map[string]any{
		"Error": api.Error{}, "Run": api.Run{}, "RunDetail": api.RunDetail{}, "Task": api.Task{}, "Approval": api.Approval{},
		"RunList": api.RunList{}, "Event": api.Event{}, "CreateRun": api.CreateRun{}, "Promote": api.Promote{},
		"CreateRunResult": api.CreateRunResult{}, "ApproveRun": api.ApproveRun{}, "Artifact": api.Artifact{},
		"Environment": api.Environment{}, "Lock": api.Lock{}, "Hosts": api.Hosts{}, "Host": api.Host{}, "Whoami": api.Whoami{},
		"Token": api.Token{}, "CreateToken": api.CreateToken{}, "NewToken": api.NewToken{}, "AuditEntry": api.AuditEntry{},
	}
	for name, v := range types {
		s := doc.Components.Schemas[name]
		if s == nil {
			t.Errorf("no schema %s", name)
			continue
		}
		fields, always := jsonFields(reflect.TypeOf(v))
		var props []string
		for p := range s.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		sort.Strings(fields)
		if !slices.Equal(props, fields) {
			t.Errorf("schema %s has %v; the type writes %v", name, props, fields)
		}
		req := slices.Clone(s.Required)
		sort.Strings(req)
		sort.Strings(always)
		if !slices.Equal(req, always) {
			t.Errorf("schema %s requires %v; the type always writes %v", name, req, always)
		}
	}
	for name := range doc.Components.Schemas {
		if _, ok := types[name]; !ok {
			t.Errorf("schema %s has no type in the test", name)
		}
	}
}

// jsonFields lists the JSON names a struct type writes, and those it
// always writes.
func jsonFields(t reflect.Type) (all, always []string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			a, al := jsonFields(f.Type)
			all, always = append(all, a...), append(always, al...)
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		all = append(all, name)
		if !strings.Contains(opts, "omitempty") {
			always = append(always, name)
		}
	}
	return all, always
}

// TestOpenAPIAnswersValidate checks real answers of the handlers against
// the document's schemas.
func TestOpenAPIAnswersValidate(t *testing.T) {
	doc := loadOpenAPI(t)
	f := newFixture(t)
	run := f.aRun(t, store.RunRunning)
	ctx := context.Background()
	if _, err := f.srv.st.AppendEvent(ctx, store.Event{RunID: run.ID, Type: "draining", Host: "web-1", Message: "2 in flight", Data: []byte(`{"in_flight":2}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.StartTask(ctx, store.TaskRecord{RunID: run.ID, Stage: "batch-1", Job: "web-1", Index: 0, Kind: "detach", Host: "web-1"}); err != nil {
		t.Fatal(err)
	}
	art := filepath.Join(t.TempDir(), "a.bin")
	if err := os.WriteFile(art, []byte("bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	cl, _ := api.NewClient(f.ts.URL, f.tokens[RoleAdmin])
	if _, err := cl.Upload(ctx, art); err != nil {
		t.Fatal(err)
	}
	admin := f.tokens[RoleAdmin]
	for _, tc := range []struct {
		method, path, body string
		status             int
		schema             *schema
	}{
		{"GET", "/api/v1/whoami", "", 200, ref("Whoami")},
		{"GET", "/api/v1/environments", "", 200, arrayOf("Environment")},
		{"GET", "/api/v1/environments/staging/hosts", "", 200, ref("Hosts")},
		{"GET", "/api/v1/runs", "", 200, ref("RunList")},
		{"GET", "/api/v1/runs/" + run.ID, "", 200, ref("RunDetail")},
		{"GET", "/api/v1/runs/" + run.ID + "/events", "", 200, arrayOf("Event")},
		{"POST", "/api/v1/runs/" + run.ID + "/abort", "", 202, ref("Run")},
		{"POST", "/api/v1/runs/" + run.ID + "/approve", `{"stage":"batch-1"}`, 200, ref("Approval")},
		{"POST", "/api/v1/tokens", `{"name":"ci","role":"deployer"}`, 201, ref("NewToken")},
		{"GET", "/api/v1/tokens", "", 200, arrayOf("Token")},
		{"GET", "/api/v1/audit", "", 200, arrayOf("AuditEntry")},
		{"GET", "/api/v1/runs/r-nope", "", 404, ref("Error")},
		{"POST", "/api/v1/runs", `{"env":"staging"}`, 400, ref("Error")},
	} {
		resp, body := f.do(t, tc.method, tc.path, admin, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, resp.StatusCode, body)
			continue
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Errorf("%s %s: %v", tc.method, tc.path, err)
			continue
		}
		if err := validate(doc, tc.schema, v, "$"); err != nil {
			t.Errorf("%s %s: %v\n%s", tc.method, tc.path, err, body)
		}
	}
	if resp, _ := f.do(t, "GET", "/api/v1/openapi.json", "", ""); resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("openapi.json served as %q", resp.Header.Get("Content-Type"))
	}
	_ = http.StatusOK
}

func ref(name string) *schema { return &schema{Ref: "#/components/schemas/" + name} }
func arrayOf(name string) *schema {
	return &schema{Type: "array", Items: ref(name)}
}

// validate checks v against s: types, required and unknown properties,
// enums, items, references. It covers what the document uses.
func validate(doc openAPIDoc, s *schema, v any, at string) error {
	if s.Ref != "" {
		s = doc.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
		if s == nil {
			return fmt.Errorf("%s: unknown $ref", at)
		}
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, got %T", at, v)
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				return fmt.Errorf("%s: required %q missing", at, r)
			}
		}
		for k, pv := range m {
			ps, ok := s.Properties[k]
			if !ok {
				if s.AdditionalProperties != nil && !*s.AdditionalProperties {
					return fmt.Errorf("%s: property %q not in the schema", at, k)
				}
				continue
			}
			if err := validate(doc, ps, pv, at+"."+k); err != nil {
				return err
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, got %T", at, v)
		}
		for i, e := range a {
			if err := validate(doc, s.Items, e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a string, got %T", at, v)
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, str) {
			return fmt.Errorf("%s: %q not one of %v", at, str, s.Enum)
		}
	case "integer":
		n, ok := v.(float64)
		if !ok || n != float64(int64(n)) {
			return fmt.Errorf("%s: want an integer, got %v", at, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: want a boolean, got %T", at, v)
		}
	}
	return nil
}
