package notify

import (
	"fmt"
	"strings"
)

// text is the one human line of p, the field Slack's incoming webhooks
// show: "zerodown: v1.4.2 to production succeeded (run r-42)".
func text(p Payload) string {
	what := p.Event
	switch p.Event {
	case RunStarted:
		what = "started"
	case WaitingForApproval:
		what = "is waiting for approval"
		if p.Stage != "" {
			what += " of stage " + p.Stage
		}
	case Succeeded:
		what = "succeeded"
	case Failed:
		what = "failed"
	case RolledBack:
		what = "was rolled back"
	case NeedsAttention:
		what = "needs attention"
	}
	version := p.Version
	if version == "" {
		version = "a release"
	}
	line := fmt.Sprintf("zerodown: %s to %s %s", version, p.Environment, what)
	if p.Message != "" {
		line += ": " + firstLine(p.Message)
	}
	if p.Run != "" {
		line += " (run " + p.Run + ")"
	}
	return slackEscape(line)
}

// firstLine keeps the text to one line; the whole message is in Message.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

// slackEscape escapes the three characters Slack reads as markup, so a
// message such as "p99 > 250ms" shows as written and cannot make a link
// or a mention.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace
