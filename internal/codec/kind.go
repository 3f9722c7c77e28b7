package codec

// Kind describes the msgpack value raw holds for a person: "nothing" when
// raw is empty, "null", "a boolean", "an integer", "a number", "a string",
// "binary data", "an array", "a map", "an extension value", or "malformed
// data".
func Kind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch c := raw[0]; {
	case c <= 0x7f || c >= 0xe0 || (c >= 0xcc && c <= 0xd3):
		return "an integer"
	case c >= 0x80 && c <= 0x8f, c == 0xde, c == 0xdf:
		return "a map"
	case c >= 0x90 && c <= 0x9f, c == 0xdc, c == 0xdd:
		return "an array"
	case c >= 0xa0 && c <= 0xbf, c >= 0xd9 && c <= 0xdb:
		return "a string"
	case c == 0xc0:
		return "null"
	case c == 0xc2, c == 0xc3:
		return "a boolean"
	case c >= 0xc4 && c <= 0xc6:
		return "binary data"
	case c == 0xca, c == 0xcb:
		return "a number"
	case c >= 0xc7 && c <= 0xc9, c >= 0xd4 && c <= 0xd8:
		return "an extension value"
	}
	return "malformed data"
}

// IsNil reports whether raw is empty or the msgpack nil.
func IsNil(raw []byte) bool { return len(raw) == 0 || (len(raw) == 1 && raw[0] == 0xc0) }
