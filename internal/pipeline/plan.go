package pipeline

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// WriteYAML writes p in the hand-written form of zerodown.yaml, so a
// generated plan can be read, reviewed, and pasted into the file as is.
func WriteYAML(w io.Writer, p *Pipeline) error {
	var b strings.Builder
	fmt.Fprintf(&b, "pipelines:\n  %s:\n    environment: %s\n    stages:\n", yamlString(p.Name), yamlString(p.Environment))
	for _, st := range p.Stages {
		fmt.Fprintf(&b, "      - name: %s\n        jobs:\n", yamlString(st.Name))
		for _, j := range st.Jobs {
			parts := make([]string, 0, len(j.Tasks))
			for _, t := range j.Tasks {
				parts = append(parts, taskYAML(t))
			}
			fmt.Fprintf(&b, "          - { name: %s, tasks: [ %s ] }\n", yamlString(j.Name), strings.Join(parts, ", "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func taskYAML(t Task) string {
	var fields []string
	switch {
	case t.Host != "":
		fields = append(fields, string(t.Kind)+": "+yamlString(t.Host))
	case t.Kind == KindSleep:
		fields = append(fields, "sleep: "+durationString(t.Sleep))
	case t.Kind == KindExec && t.Exec != nil:
		args := make([]string, len(t.Exec.Command))
		for i, a := range t.Exec.Command {
			args[i] = yamlString(a)
		}
		fields = append(fields, "exec: { command: ["+strings.Join(args, ", ")+"] }")
	case t.Kind == KindSmoke && t.Smoke != nil:
		body := ""
		if t.Smoke.Body != "" {
			body = ", body_contains: " + yamlString(t.Smoke.Body)
		}
		fields = append(fields, fmt.Sprintf("smoke: { url: %s, status: %d%s }", yamlString(t.Smoke.URL), t.Smoke.Status, body))
	case t.Kind == KindSwitch && t.Switch != nil:
		fields = append(fields, fmt.Sprintf("switch: { from: %s, to: %s }", yamlString(t.Switch.From), yamlString(t.Switch.To)))
	case t.Kind == KindPreviewLoad && t.Load != nil:
		fields = append(fields, fmt.Sprintf("preview-load: { url: %s, rate: %d, duration: %s }", yamlString(t.Load.URL), t.Load.Rate, durationString(time.Duration(t.Load.Duration))))
	case t.Kind == KindWeights && t.Weights != nil:
		// Share 0 (every host back on base) is the key left out.
		share := ""
		if t.Weights.Share != 0 {
			share = fmt.Sprintf(", share: %d", t.Weights.Share)
		}
		fields = append(fields, fmt.Sprintf("weights: { canary: [%s]%s, base: %d }", yamlList(t.Weights.Canary), share, t.Weights.Base))
	case t.Kind == KindAnalyze && t.Analyze != nil:
		a := t.Analyze
		fields = append(fields, fmt.Sprintf("analyze: { canary: [%s], for: %s, max_error_rate: %g, max_p99_increase: %g, min_requests: %d }",
			yamlList(a.Canary), durationString(time.Duration(a.For)), a.MaxErrorRate, a.MaxP99Increase, a.MinRequests))
	case t.Kind == KindApprove:
		msg := ""
		if t.Approve != nil {
			msg = t.Approve.Message
		}
		fields = append(fields, "approve: { message: "+yamlString(msg)+" }")
	case t.Kind == KindPause && t.Pause != nil:
		pause := []string{}
		if t.Pause.For > 0 {
			pause = append(pause, "for: "+durationString(time.Duration(t.Pause.For)))
		}
		if t.Pause.Message != "" {
			pause = append(pause, "message: "+yamlString(t.Pause.Message))
		}
		fields = append(fields, "pause: { "+strings.Join(pause, ", ")+" }")
	default:
		fields = append(fields, string(t.Kind)+": {}")
	}
	if t.Slot != "" {
		fields = append(fields, "slot: "+t.Slot)
	}
	if t.Timeout > 0 {
		fields = append(fields, "timeout: "+durationString(t.Timeout))
	}
	if t.RunIf != "" && t.RunIf != "passed" {
		fields = append(fields, "run_if: "+t.RunIf)
	}
	if t.OnCancel != nil {
		fields = append(fields, "on_cancel: "+taskYAML(*t.OnCancel))
	}
	return "{" + strings.Join(fields, ", ") + "}"
}

func durationString(d time.Duration) string {
	s := d.String()
	// 1m0s reads better as 1m, 1h0m0s as 1h.
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// yamlString writes s plain when YAML reads it back as the same string, and
// double-quoted otherwise.
func yamlString(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/'
		if !ok {
			return strconv.Quote(s)
		}
	}
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "null", "~":
		return strconv.Quote(s)
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return strconv.Quote(s)
	}
	return s
}

func yamlList(items []string) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = yamlString(it)
	}
	return strings.Join(out, ", ")
}
