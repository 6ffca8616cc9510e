package host

import "context"

type progressKey struct{}

// WithProgress returns a context whose long calls (an activation, a
// rollback) report how they are getting on to fn, such as "preflight:
// waiting for health, 3s". fn must not block.
func WithProgress(ctx context.Context, fn func(msg string)) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}

// Progress reports msg to the function WithProgress put in ctx, if any.
func Progress(ctx context.Context, msg string) {
	if fn, ok := ctx.Value(progressKey{}).(func(string)); ok && fn != nil {
		fn(msg)
	}
}

type outputKey struct{}

// WithOutput returns a context whose calls report what they printed — the
// output of an exec host's deploy or rollback script — to fn, for the
// run's journal. fn must not block.
func WithOutput(ctx context.Context, fn func(msg string)) context.Context {
	return context.WithValue(ctx, outputKey{}, fn)
}

// Output reports msg to the function WithOutput put in ctx, if any.
func Output(ctx context.Context, msg string) {
	if fn, ok := ctx.Value(outputKey{}).(func(string)); ok && fn != nil {
		fn(msg)
	}
}
