package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
)

// Toxiproxy's streams: upstream carries what the client of a link sends
// (the engine's calls, the balancer's requests), downstream the answers.
var bothWays = []string{"upstream", "downstream"}

// addToxic puts a toxic of kind typ with attrs on each of streams of p
// and returns what takes it off again; the test's end takes it off too.
// Taking off a blackhole (timeout 0) closes the connections it held, as a
// partition that heals would leave them broken.
func addToxic(t *testing.T, p *toxiproxy.Proxy, typ string, attrs map[string]any, streams ...string) (remove func()) {
	t.Helper()
	var names []string
	for _, s := range streams {
		name := p.Name + "_" + typ + "_" + s
		b, err := json.Marshal(map[string]any{"name": name, "type": typ, "stream": s, "attributes": attrs})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Toxics.AddToxicJson(bytes.NewReader(b)); err != nil {
			t.Fatalf("toxiproxy %s: add %s: %v", p.Name, name, err)
		}
		names = append(names, name)
	}
	var once sync.Once
	remove = func() {
		once.Do(func() {
			for _, n := range names {
				_ = p.Toxics.RemoveToxic(context.Background(), n)
			}
		})
	}
	t.Cleanup(remove)
	return remove
}
