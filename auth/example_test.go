package auth_test

import (
	"context"
	"fmt"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/rpc"
)

// Parse an auth.json, resolve the caller once per connection, compile the
// method's requirement once per export, and decide each call.
func ExampleParse() {
	policy, err := auth.Parse("auth.json", []byte(`{
	  // Alice may read the temperature; Bobby may only connect.
	  "allow": [
	    {"user_id": "Alice", "credentials": "CURVE:33-ScDXnSKE4s_qTtCHCI79JjUdLyaU2isNAxt_DEWY", "capabilities": ["can_read_temp"]},
	    {"user_id": "Bobby", "credentials": "qemlQOhM49cmYa7Med2kam6mc1ze17vc2I8xgBQ0IVk"}
	  ]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	// What the weather agent declared when it exported "temperature".
	req := policy.Requirement(rpc.Principal{UserID: "weather", Identity: "weather"}, "temperature",
		auth.Declared{Capabilities: []string{"can_read_temp"}})

	for _, user := range []string{"Alice", "Bobby"} {
		subject, err := policy.Subject(rpc.Principal{UserID: user, Identity: user + ".agent"})
		if err != nil {
			fmt.Println(err)
			return
		}
		d := policy.Decide(subject, req, nil)
		fmt.Println(user, d.Allowed, d.Reason())
	}
	// Output:
	// Alice true method "temperature" is allowed
	// Bobby false method "temperature" requires capabilities [can_read_temp], but capabilities [] were provided; missing [can_read_temp]
}

// A validation error names the file, line, column and JSON path.
func ExampleParse_validationError() {
	_, err := auth.Parse("auth.json", []byte(`{
  "allow": [
    {"user_id": "Bobby", "credentials": "qemlQOhM49cmYa7Med2kam6mc1ze17vc2I8xgBQ0IVk",
     "capabilites": ["can_read_temp"]}
  ]
}`))
	fmt.Println(err)
	// Output:
	// auth.json:4:6: allow[0].capabilites: unknown key; did you mean "capabilities"?
}

// Topic rules protect trees per segment: devices/# protects devices/... but
// not devicesX.
func ExamplePolicy_DecideTopic() {
	policy, err := auth.Parse("auth.json", []byte(`{
	  "allow": [{"user_id": "Bobby", "credentials": "qemlQOhM49cmYa7Med2kam6mc1ze17vc2I8xgBQ0IVk"}],
	  "topics": {"devices/#": {"publish": ["write_devices"]}}
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	bobby, _ := policy.Subject(rpc.Principal{UserID: "Bobby", Identity: "bobby"})
	for _, topic := range []string{"devicesX/a", "devices/a"} {
		d := policy.DecideTopic(bobby, auth.Publish, topic)
		fmt.Println(d.Allowed, d.Reason())
	}
	// Output:
	// true publish to "devicesX/a" is allowed
	// false publish to "devices/a" requires capabilities [write_devices], but capabilities [] were provided; missing [write_devices] (topic rule "devices/#")
}

// A Store keeps the policy in force and tells the platform about reloads.
func ExampleOpenStore() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := auth.OpenStore(ctx, "/etc/capbus/auth.json")
	if store == nil {
		fmt.Println("cannot watch:", err)
		return
	}
	defer store.Close()
	if err != nil {
		fmt.Println("running with a closed policy until the file is fixed:", err)
	}
	store.Subscribe(func(ev auth.ReloadEvent) {
		if ev.Err != nil {
			fmt.Println("reload:", ev.Err) // the previous policy stays in force (or closed, if deleted)
		}
		// Re-resolve every live peer against ev.Policy; disconnect those
		// whose Subject fails.
	})
	_ = store.Policy() // the policy in force, for each new connection
}

// Permissions answers "what may this principal do?", with sources.
func ExamplePolicy_Permissions() {
	policy, _ := auth.Parse("auth.json", []byte(`{
	  "roles": {"viewer": ["read"]},
	  "allow": [
	    {"user_id": "Alice", "credentials": "33-ScDXnSKE4s_qTtCHCI79JjUdLyaU2isNAxt_DEWY", "roles": ["viewer"], "capabilities": ["write", "!delete"]},
	    {"user_id": "*", "capabilities": ["delete", "ping"]}
	  ]
	}`))
	alice, _ := policy.Subject(rpc.Principal{UserID: "Alice", Identity: "alice.agent"})
	perm := policy.Permissions(alice)
	for _, g := range perm.Capabilities {
		fmt.Println("holds", g.Name, "from", g.Sources[0])
	}
	for _, r := range perm.Removed {
		fmt.Println("removed", r.Name, "by", r.Cause, r.By[0])
	}
	// Output:
	// holds ping from "*" allow[1]
	// holds read from allow[0] role "viewer"
	// holds write from allow[0] [direct]
	// removed delete by negation allow[0] [direct]
}
