package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// payloadSize is the size of the request and of the reply.
const payloadSize = 200

// callTimeout bounds one round trip; a benchmark that loses a reply fails
// instead of hanging.
const callTimeout = 10 * time.Second

// A client is the caller side of one stack, connected to its broker. call
// makes one round trip of payload and is called concurrently, each slot from
// one goroutine only.
type client interface {
	call(ctx context.Context, slot int, payload []byte) error
	close()
}

// result is what a caller measured over the window.
type result struct {
	Calls    int64  `json:"calls"`
	Errors   int64  `json:"errors"`
	FirstErr string `json:"first_err,omitempty"`
	WindowNS int64  `json:"window_ns"`
	P50NS    int64  `json:"p50_ns"`
	P99NS    int64  `json:"p99_ns"`
	MeanNS   int64  `json:"mean_ns"`
	// The caller process over the window.
	UserNS  int64  `json:"user_ns"`
	SysNS   int64  `json:"sys_ns"`
	Mallocs uint64 `json:"mallocs"`
	Syscr   int64  `json:"syscr"`
	Syscw   int64  `json:"syscw"`
	// Total is the operations completed since the client connected,
	// warm-up and earlier windows included (a publisher's subscribers
	// should have received Total messages each).
	Total int64 `json:"total"`
}

// runCaller connects, warms up, and then measures one window for each "go"
// line, reporting each.
//
// With -op publish the client publishes instead of calling (see
// dialPublisher), with -op connect each operation is a new connection
// (see dialConnector).
func runCaller(ctx context.Context, cfg *roleConfig, in <-chan string, out *lineWriter) error {
	var (
		c   client
		err error
	)
	switch {
	case cfg.op == "publish":
		c, err = dialPublisher(ctx, cfg)
	case cfg.op == "connect":
		c, err = dialConnector(ctx, cfg)
	case cfg.op != "call":
		err = fmt.Errorf("unknown operation %q (call, publish, connect)", cfg.op)
	case cfg.stack == "capbus":
		c, err = dialCapbus(ctx, cfg)
	case cfg.stack == "zmq4":
		c, err = dialZmq4(ctx, cfg, cfg.inflight)
	case cfg.stack == "nats", cfg.stack == "nats-tls":
		c, err = dialNATS(cfg)
	default:
		err = fmt.Errorf("unknown stack %q", cfg.stack)
	}
	if err != nil {
		return err
	}
	defer c.close()
	out.printf("ready")

	r := load(ctx, c, cfg.inflight, cfg.warmup, nil, nil)
	if r.Calls == 0 || r.Errors > 0 {
		return fmt.Errorf("warm-up: %d calls, %d errors (first: %s)", r.Calls, r.Errors, r.FirstErr)
	}
	total := r.Calls
	out.printf("warm total=%d", total)
	for {
		if err := waitFor(in, "go"); err != nil {
			if errors.Is(err, errStdinClosed) {
				return nil // the orchestrator is done with us
			}
			return err
		}
		var (
			prof    *os.File
			profErr error
			m0, m1  mark
		)
		r := load(ctx, c, cfg.inflight, cfg.duration, func() {
			if cfg.cpuprofile != "" {
				prof, profErr = startProfile(cfg.cpuprofile)
			}
			m0 = takeMark(false)
		}, func() {
			m1 = takeMark(false)
			if prof != nil {
				profErr = stopProfile(prof)
			}
		})
		if profErr != nil {
			return profErr
		}
		total += r.Calls
		r.Total = total
		r.UserNS, r.SysNS, r.Mallocs = m1.UserNS-m0.UserNS, m1.SysNS-m0.SysNS, m1.Mallocs-m0.Mallocs
		r.Syscr, r.Syscw = m1.Syscr-m0.Syscr, m1.Syscw-m0.Syscw
		out.printf("stopped")
		b, _ := json.Marshal(r)
		out.printf("result %s", b)
	}
}

// load runs inflight goroutines, each making one call at a time, for d; it
// returns once no call is in flight. Latency is measured per call. start and
// stop (optional) run just before the first call and just after the last.
func load(ctx context.Context, c client, inflight int, d time.Duration, start, stop func()) result {
	var (
		done     atomic.Bool
		wg       sync.WaitGroup
		errs     atomic.Int64
		firstErr atomic.Pointer[string]
		lats     = make([][]int64, inflight)
	)
	// Preallocate the latencies of up to 200,000 calls/s outside the window.
	perSlot := int(d.Seconds()*200_000)/inflight + 1024
	for i := range lats {
		lats[i] = make([]int64, 0, perSlot)
	}
	if start != nil {
		start()
	}
	t0 := time.Now()
	timer := time.AfterFunc(d, func() { done.Store(true) })
	defer timer.Stop()
	for slot := range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, payloadSize)
			for i := range payload {
				payload[i] = byte(i)
			}
			binary.BigEndian.PutUint16(payload, uint16(slot))
			l := lats[slot]
			for !done.Load() {
				t := time.Now()
				if err := c.call(ctx, slot, payload); err != nil {
					if errs.Add(1) == 1 {
						s := err.Error()
						firstErr.Store(&s)
					}
					if ctx.Err() != nil || errs.Load() > 100 {
						break
					}
					continue
				}
				l = append(l, int64(time.Since(t)))
			}
			lats[slot] = l
		}()
	}
	wg.Wait()
	window := time.Since(t0)
	if stop != nil {
		stop()
	}
	var all []int64
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	r := result{Calls: int64(len(all)), Errors: errs.Load(), WindowNS: int64(window)}
	if s := firstErr.Load(); s != nil {
		r.FirstErr = *s
	}
	if len(all) > 0 {
		r.P50NS = all[len(all)/2]
		r.P99NS = all[min(len(all)-1, len(all)*99/100)]
		var sum int64
		for _, v := range all {
			sum += v
		}
		r.MeanNS = sum / int64(len(all))
	}
	return r
}
