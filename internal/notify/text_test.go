package notify

import "testing"

func TestText(t *testing.T) {
	p := Payload{Run: "r-42", Environment: "production", Version: "v1.4.2"}
	for _, c := range []struct {
		event, stage, message, want string
	}{
		{Succeeded, "", "", "zerodown: v1.4.2 to production succeeded (run r-42)"},
		{RunStarted, "", "", "zerodown: v1.4.2 to production started (run r-42)"},
		{WaitingForApproval, "canary", "", "zerodown: v1.4.2 to production is waiting for approval of stage canary (run r-42)"},
		{Failed, "", "web-2 unhealthy\nmore detail", "zerodown: v1.4.2 to production failed: web-2 unhealthy (run r-42)"},
		{RolledBack, "", "p99 > 250ms", "zerodown: v1.4.2 to production was rolled back: p99 &gt; 250ms (run r-42)"},
		{NeedsAttention, "", "", "zerodown: v1.4.2 to production needs attention (run r-42)"},
	} {
		p.Event, p.Stage, p.Message = c.event, c.stage, c.message
		if got := text(p); got != c.want {
			t.Errorf("%s: %q, want %q", c.event, got, c.want)
		}
	}
}
