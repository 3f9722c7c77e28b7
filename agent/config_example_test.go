package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/capbus/capbus/agent"
	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/rpc"
)

// The operator (here an agent holding edit_config_store; usually "capbus
// config store weather config weather.json") stores the weather agent's
// configuration. The weather agent has it when it is connected, and its
// handler is called for the entry and for every change.
func ExampleConfig_OnChange() {
	d := startDemo()
	defer d.stop()
	ctx := context.Background()
	operator := d.newAgent("operator", "operator")
	defer run(operator)()
	store := operator.ConfigStore("weather")
	if _, err := store.Put(ctx, "config", configstore.KindJSON, []byte(`{"units": "C"}`)); err != nil {
		log.Fatal(err)
	}

	type settings struct {
		Units string `json:"units"`
	}
	weather := d.newAgent("weatherman", "weather")
	changes := make(chan string, 8)
	err := weather.Config().OnChange("config", func(ctx context.Context, ev agent.ConfigEvent) {
		var s settings
		if ev.Action != agent.ConfigDelete {
			_ = ev.Decode(&s)
		}
		changes <- fmt.Sprintf("%s %s: units %q (version %d, by %s)", ev.Action, ev.Entry.Name, s.Units, ev.Entry.Version, ev.Entry.User)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer run(weather)()

	// Connected: the entry is there, before any call is served.
	s, err := agent.ConfigAs[settings](weather, "config")
	fmt.Println("at connect:", s.Units, err)
	fmt.Println(<-changes)

	store.Put(ctx, "config", configstore.KindJSON, []byte(`{"units": "F"}`))
	fmt.Println(<-changes)
	store.Delete(ctx, "config")
	fmt.Println(<-changes)
	// Output:
	// at connect: C <nil>
	// create config: units "C" (version 1, by operator)
	// update config: units "F" (version 2, by operator)
	// delete config: units "" (version 3, by operator)
}

// Another agent's store needs a capability: bob holds none.
func ExampleConfigStore() {
	d := startDemo()
	defer d.stop()
	bob := d.newAgent("bob", "bob")
	defer run(bob)()

	_, err := bob.ConfigStore("weather").Put(context.Background(), "config", configstore.KindJSON, []byte(`{}`))
	var e *rpc.Error
	if errors.Is(err, rpc.ErrUnauthorized) && errors.As(err, &e) {
		fmt.Println(e.Message())
	}

	// Bad input never leaves the agent.
	_, err = bob.ConfigStore("weather").Put(context.Background(), "config", configstore.KindJSON, []byte(`{"units": C}`))
	fmt.Println(err)
	// Output:
	// config store of "weather": put requires capabilities [edit_config_store], but capabilities [] were provided; missing [edit_config_store]
	// config:1:11: invalid JSON: invalid character 'C' looking for beginning of value
}
