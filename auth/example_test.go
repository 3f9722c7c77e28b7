package auth_test

import (
	"fmt"

	"github.com/capbus/capbus/auth"
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
	req := policy.Requirement(auth.Principal{UserID: "weather", Identity: "weather"}, "temperature",
		auth.Declared{Capabilities: []string{"can_read_temp"}})

	for _, user := range []string{"Alice", "Bobby"} {
		subject, err := policy.Subject(auth.Principal{UserID: user, Identity: user + ".agent"})
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
