// Package station is the weather agent of the capbus examples: the VOLTTRON
// "VIP Authorization" weather agent, written with the capbus agent SDK.
//
// It exports three methods, each with what a caller must hold:
//
//	temperature  capability can_read_temp
//	forecast     capabilities can_read_temp and can_read_weather_data
//	set_units    role admin
//
// and publishes a reading per city on "weather/<city>/temperature".
//
// Its cities and units come from its configuration entry "config" in the
// platform's configuration store, JSON like
//
//	{"units": "F", "cities": {"paris": 21.5, "oslo": 9.0}}
//
// (temperatures in degrees Celsius; a missing field, or a missing entry,
// keeps the built-in default). It follows changes of the entry live.
package station

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/rpc"
)

// Identity is the agent identity the weather agent claims.
const Identity = "weather"

// ConfigName is the name of the weather agent's configuration entry.
const ConfigName = "config"

// Settings is the weather agent's configuration entry.
type Settings struct {
	// Units is "C" or "F".
	Units string `json:"units,omitempty"`
	// Cities maps each city to its base temperature in degrees Celsius.
	Cities map[string]float64 `json:"cities,omitempty"`
}

// DefaultSettings are the settings without a configuration entry.
func DefaultSettings() Settings {
	return Settings{Units: "C", Cities: map[string]float64{"paris": 21.5, "oslo": 9.0, "cairo": 31.0, "richland": 18.0}}
}

// Reading is one temperature reading.
type Reading struct {
	City        string  `msgpack:"city" json:"city"`
	Temperature float64 `msgpack:"temperature" json:"temperature"`
	Units       string  `msgpack:"units" json:"units"`
	Day         int     `msgpack:"day,omitempty" json:"day,omitempty"`
}

// String reads as "21.5 °C in paris".
func (r Reading) String() string {
	return fmt.Sprintf("%.1f °%s in %s", r.Temperature, r.Units, r.City)
}

// TemperatureArgs are the arguments of temperature: an optional city
// (omitempty: a caller may leave it out; the default is paris).
type TemperatureArgs struct {
	City string `msgpack:"city,omitempty"`
}

// ForecastArgs are the arguments of forecast: an optional city and an
// optional number of days (default 3).
type ForecastArgs struct {
	City string `msgpack:"city,omitempty"`
	Days int    `msgpack:"days,omitempty"`
}

// UnitsArgs are the arguments of set_units: "C" or "F".
type UnitsArgs struct {
	Units string `msgpack:"units"`
}

// Station holds the (simulated) weather data. It is safe for concurrent use.
type Station struct {
	mu     sync.Mutex
	units  string
	base   map[string]float64 // degrees Celsius
	served map[string]int     // calls served per method
	log    *slog.Logger

	applied   uint64        // revision of the configuration applied last
	appliedCh chan struct{} // closed and replaced at every application
}

// New returns a station with a few cities, reporting in Celsius. log may be
// nil.
func New(log *slog.Logger) *Station {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := DefaultSettings()
	return &Station{
		log:       log,
		units:     d.Units,
		base:      d.Cities,
		served:    map[string]int{},
		appliedCh: make(chan struct{}),
	}
}

// Register exports the station's methods on a, with their requirements,
// and follows the agent's configuration entry "config".
func (s *Station) Register(a *agent.Agent) error {
	if err := a.Export("temperature", rpc.Func(s.Temperature), rpc.Allow("can_read_temp")); err != nil {
		return err
	}
	if err := a.Export("forecast", rpc.Func(s.Forecast), rpc.Allow("can_read_temp", "can_read_weather_data")); err != nil {
		return err
	}
	if err := a.Export("set_units", rpc.Func(s.SetUnits), rpc.AllowRoles("admin")); err != nil {
		return err
	}
	return a.Config().OnChange(ConfigName, s.configure)
}

// configure applies a create, update or delete of the configuration
// entry. An entry that does not decode, or names other units, is logged
// and leaves the settings as they are.
func (s *Station) configure(_ context.Context, ev agent.ConfigEvent) {
	set := DefaultSettings()
	if ev.Action != agent.ConfigDelete {
		var got Settings
		if err := ev.Decode(&got); err != nil {
			s.log.Warn("configuration ignored", "version", ev.Entry.Version, "err", err)
			s.noteApplied(ev.Entry.Revision)
			return
		}
		if u := strings.ToUpper(got.Units); u != "" && u != "C" && u != "F" {
			s.log.Warn("configuration ignored", "version", ev.Entry.Version, "err", fmt.Sprintf("units must be \"C\" or \"F\", got %q", got.Units))
			s.noteApplied(ev.Entry.Revision)
			return
		}
		if got.Units != "" {
			set.Units = strings.ToUpper(got.Units)
		}
		if len(got.Cities) > 0 {
			set.Cities = make(map[string]float64, len(got.Cities))
			for city, t := range got.Cities {
				set.Cities[strings.ToLower(city)] = t
			}
		}
	}
	s.mu.Lock()
	s.units, s.base = set.Units, set.Cities
	s.mu.Unlock()
	s.log.Info("configuration applied", "action", ev.Action, "version", ev.Entry.Version, "by_user", ev.Entry.User,
		"units", set.Units, "cities", len(set.Cities))
	s.noteApplied(ev.Entry.Revision)
}

func (s *Station) noteApplied(revision uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = max(s.applied, revision)
	close(s.appliedCh)
	s.appliedCh = make(chan struct{})
}

// WaitApplied waits until the station has applied (or ignored) the
// configuration change of the given revision of its store, or ctx ends.
func (s *Station) WaitApplied(ctx context.Context, revision uint64) error {
	for {
		s.mu.Lock()
		applied, ch := s.applied, s.appliedCh
		s.mu.Unlock()
		if applied >= revision {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("station: configuration revision %d not applied (at %d)", revision, applied), ctx.Err())
		}
	}
}

// Settings returns the units and cities in use.
func (s *Station) Settings() Settings {
	s.mu.Lock()
	defer s.mu.Unlock()
	cities := make(map[string]float64, len(s.base))
	for k, v := range s.base {
		cities[k] = v
	}
	return Settings{Units: s.units, Cities: cities}
}

// Served reports how many calls of method the station has handled: calls
// the platform refused never reach it.
func (s *Station) Served(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served[method]
}

func (s *Station) reading(city string, day int) (Reading, error) {
	city = strings.ToLower(city)
	if city == "" {
		city = "paris"
	}
	c, ok := s.base[city]
	if !ok {
		known := make([]string, 0, len(s.base))
		for k := range s.base {
			known = append(known, k)
		}
		sort.Strings(known)
		return Reading{}, rpc.Errorf(rpc.CodeInvalidArgs, "no station in %q; known: %s", city, strings.Join(known, ", "))
	}
	c += float64(day%3) - 1
	if day == 0 {
		c = s.base[city]
	}
	t := c
	if s.units == "F" {
		t = c*9/5 + 32
	}
	return Reading{City: city, Temperature: t, Units: s.units, Day: day}, nil
}

// Temperature is the temperature method: the current reading of a city
// (default paris). The caller is available with rpc.CallerFrom.
func (s *Station) Temperature(ctx context.Context, args TemperatureArgs) (Reading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.served["temperature"]++
	return s.reading(args.City, 0)
}

// Forecast is the forecast method: one reading per day for 1 to 7 days.
func (s *Station) Forecast(ctx context.Context, args ForecastArgs) ([]Reading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.served["forecast"]++
	if args.Days == 0 {
		args.Days = 3
	}
	if args.Days < 1 || args.Days > 7 {
		return nil, rpc.Errorf(rpc.CodeInvalidArgs, "days must be 1 to 7, got %d", args.Days)
	}
	out := make([]Reading, 0, args.Days)
	for d := 1; d <= args.Days; d++ {
		r, err := s.reading(args.City, d)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// SetUnits is the set_units method (role admin): "C" or "F". It returns the
// units now in use and logs who changed them.
func (s *Station) SetUnits(ctx context.Context, args UnitsArgs) (string, error) {
	u := strings.ToUpper(args.Units)
	if u != "C" && u != "F" {
		return "", rpc.Errorf(rpc.CodeInvalidArgs, "units must be \"C\" or \"F\", got %q", args.Units)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.served["set_units"]++
	s.units = u
	if c, ok := rpc.CallerFrom(ctx); ok {
		s.log.InfoContext(ctx, "units changed", "units", u, "by_user", c.UserID, "by_identity", c.Identity)
	}
	return u, nil
}

// Publish publishes every city's reading on "weather/<city>/temperature"
// every interval until ctx ends. Failed publishes are logged and retried on
// the next tick.
func (s *Station) Publish(ctx context.Context, a *agent.Agent, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.Ready():
		}
		s.mu.Lock()
		var readings []Reading
		for city := range s.base {
			r, _ := s.reading(city, 0)
			readings = append(readings, r)
		}
		s.mu.Unlock()
		for _, r := range readings {
			if err := a.Publish(ctx, "weather/"+r.City+"/temperature", r); err != nil && ctx.Err() == nil {
				s.log.Warn("publish failed", "city", r.City, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
