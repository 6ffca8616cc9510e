package builtin

import (
	"context"
	"fmt"
	"io"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/zerodown/zerodown/internal/lb"
)

// Counts reads, from the admin API's /metrics, how many requests of pool
// the load balancer retried on another target and how many failures it met
// toward the pool's targets, since it started.
func (c *Client) Counts(ctx context.Context, pool string) (lb.Counts, error) {
	families, err := c.metrics(ctx, "read metrics of pool "+pool)
	if err != nil {
		return lb.Counts{}, err
	}
	var out lb.Counts
	out.Retries = sumCounter(families["zerodown_lb_retries_total"], pool)
	out.TargetErrors = sumCounter(families["zerodown_lb_target_errors_total"], pool)
	return out, nil
}

// metrics reads and parses /metrics.
func (c *Client) metrics(ctx context.Context, call string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", call, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", call, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		return nil, c.apiError(call, resp.StatusCode, raw, nil)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", call, err)
	}
	return families, nil
}

// TargetStats reads the pool's answers per target from /metrics: 5xx and
// proxy errors (the proxy answered because the target failed) count as
// errors.
func (c *Client) TargetStats(ctx context.Context, pool string) (map[string]lb.TargetStat, error) {
	families, err := c.metrics(ctx, "read metrics of pool "+pool)
	if err != nil {
		return nil, err
	}
	out := map[string]lb.TargetStat{}
	for _, m := range families["zerodown_lb_requests_total"].GetMetric() {
		var p, target, class string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "pool":
				p = l.GetValue()
			case "target":
				target = l.GetValue()
			case "class":
				class = l.GetValue()
			}
		}
		if p != pool {
			continue
		}
		st := out[target]
		n := uint64(m.GetCounter().GetValue())
		st.Requests += n
		if class == "5xx" || class == "proxy_error" {
			st.Errors += n
		}
		out[target] = st
	}
	return out, nil
}

// sumCounter adds the counters of a family whose pool label is pool.
func sumCounter(f *dto.MetricFamily, pool string) uint64 {
	var n float64
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "pool" && l.GetValue() == pool {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return uint64(n)
}
