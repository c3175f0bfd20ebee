package console

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
)

// HostOptions configure Push.
type HostOptions struct {
	// Confirm is shown the appliance's summary and prompt and returns the
	// answer to send ("yes" to apply).
	Confirm func(summary, prompt string) (string, error)
	// OnHello, if set, is called with each HELLO seen before the push.
	OnHello func(Hello)
}

// Push waits for the appliance to announce that it waits for a config,
// sends cfg, relays the confirmation and returns the appliance's result. A
// refused config returns the result and an error wrapping ErrRejected.
func Push(ctx context.Context, c *frame.Conn, cfg []byte, o HostOptions) (Result, error) {
	if len(cfg) == 0 || len(cfg) > MaxConfigSize {
		return Result{}, fmt.Errorf("config is %d bytes: want 1..%d", len(cfg), MaxConfigSize)
	}
	if o.Confirm == nil {
		return Result{}, fmt.Errorf("push: no Confirm function")
	}
	for {
		f, err := c.Recv(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("waiting for the appliance's HELLO: %w", err)
		}
		if f.Type != frame.TypeHello {
			continue
		}
		var h Hello
		if err := json.Unmarshal(f.Payload, &h); err != nil {
			return Result{}, fmt.Errorf("bad HELLO: %w", err)
		}
		if o.OnHello != nil {
			o.OnHello(h)
		}
		if h.State == "waiting-for-config" {
			break
		}
	}
	begin, err := json.Marshal(ConfigBegin{Size: len(cfg), SHA256: sum(cfg)})
	if err != nil {
		return Result{}, fmt.Errorf("push: %w", err)
	}
	if err := c.Send(ctx, frame.TypeConfigBegin, begin); err != nil {
		return Result{}, fmt.Errorf("push: %w", err)
	}
	for rest := cfg; len(rest) > 0; {
		n := min(len(rest), frame.MaxPayload)
		if err := c.Send(ctx, frame.TypeConfigData, rest[:n]); err != nil {
			return Result{}, fmt.Errorf("push: %w", err)
		}
		rest = rest[n:]
	}
	if err := c.Send(ctx, frame.TypeConfigEnd, nil); err != nil {
		return Result{}, fmt.Errorf("push: %w", err)
	}
	var summary string
	for {
		f, err := c.Recv(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("waiting for the appliance: %w", err)
		}
		switch f.Type {
		case frame.TypeSummary:
			summary = string(f.Payload)
		case frame.TypePrompt:
			answer, err := o.Confirm(summary, string(f.Payload))
			if err != nil {
				return Result{}, fmt.Errorf("confirm: %w", err)
			}
			if err := c.Send(ctx, frame.TypeAnswer, []byte(answer)); err != nil {
				return Result{}, fmt.Errorf("push: %w", err)
			}
		case frame.TypeResult:
			var r Result
			if err := json.Unmarshal(f.Payload, &r); err != nil {
				return Result{}, fmt.Errorf("bad RESULT: %w", err)
			}
			if !r.OK {
				return r, fmt.Errorf("%w: %s", ErrRejected, r.Message)
			}
			if r.SHA256 != sum(cfg) {
				return r, fmt.Errorf("appliance accepted sha256 %s, we sent %s", r.SHA256, sum(cfg))
			}
			return r, nil
		}
	}
}
