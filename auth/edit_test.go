package auth_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/keys"
)

// commentedFile is the shape of the auth.json a platform writes on first
// run: comments around an empty allow list.
const commentedFile = `// capbus auth.json: who may connect, and what each peer may do.
// Nobody is admitted until you add an entry.
// See docs/AUTH.md for every key.
{
  "allow": []
}
`

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.json")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

func z85Key(t *testing.T) string {
	t.Helper()
	kp, err := keys.Generate()
	require.NoError(t, err)
	return kp.Public.Z85()
}

// edit runs EditFile and fails the test on an error or a notice (a notice
// means the edit fell back to rendering the whole file).
func edit(t *testing.T, path string, change func(*auth.File) error) {
	t.Helper()
	var notes bytes.Buffer
	require.NoError(t, auth.EditFile(context.Background(), path, change, auth.WithNotices(&notes)))
	assert.Empty(t, notes.String(), "the edit was spliced, not rendered whole")
}

func read(t *testing.T, path string) (string, *auth.File) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := auth.ParseFile(path, data)
	require.NoError(t, err, string(data))
	_, err = f.Compile(path)
	require.NoError(t, err)
	return string(data), f
}

func index(f *auth.File, user string) int {
	return slices.IndexFunc(f.Allow, func(e auth.Entry) bool { return e.UserID == user })
}

func TestEditFile_AddGrantRemoveKeepTheCommentsOfThePlatformsFile(t *testing.T) {
	path := writeFile(t, commentedFile)
	header := commentedFile[:strings.Index(commentedFile, "{")]

	alice, bob := z85Key(t), z85Key(t)
	edit(t, path, func(f *auth.File) error {
		f.Allow = append(f.Allow, auth.Entry{UserID: "alice", Credentials: alice})
		return nil
	})
	text, f := read(t, path)
	assert.True(t, strings.HasPrefix(text, header), "comments kept after add:\n%s", text)
	require.Len(t, f.Allow, 1)

	edit(t, path, func(f *auth.File) error {
		f.Allow = append(f.Allow, auth.Entry{UserID: "bob", Credentials: bob})
		return nil
	})
	edit(t, path, func(f *auth.File) error {
		i := index(f, "alice")
		f.Allow[i].Capabilities = append(f.Allow[i].Capabilities, auth.Capability{Name: "can_read_temp"})
		return nil
	})
	text, f = read(t, path)
	assert.True(t, strings.HasPrefix(text, header), "comments kept after a grant:\n%s", text)
	assert.Equal(t, []string{"can_read_temp"}, f.Allow[index(f, "alice")].Capabilities.Names())

	edit(t, path, func(f *auth.File) error {
		f.Allow = slices.Delete(f.Allow, 0, 1)
		return nil
	})
	text, f = read(t, path)
	assert.True(t, strings.HasPrefix(text, header), "comments kept after remove:\n%s", text)
	require.Len(t, f.Allow, 1)
	assert.Equal(t, "bob", f.Allow[0].UserID)
	assert.NotContains(t, text, alice)
}

func TestEditFile_ChangingOneEntryKeepsTheCommentsOutsideItAndInItsUntouchedKeys(t *testing.T) {
	a, b, c := z85Key(t), z85Key(t), z85Key(t)
	text := `{
  "allow": [
    // alice: the first user
    {
      "user_id": "alice", // inside alice
      /* block inside alice */
      "credentials": "` + a + `",
      "capabilities": ["x"]
    },
    {
      "user_id": "bob",   // bob's own comment
      "credentials": "` + b + `",
      "capabilities": "y"  // string form, VOLTTRON's
    },
    // carol comes last
    {"user_id": "carol", "credentials": "` + c + `"} // one line
  ],
  "roles": {"viewer": ["x"]} // trailing
}
`
	path := writeFile(t, text)
	edit(t, path, func(f *auth.File) error {
		i := index(f, "bob")
		f.Allow[i].Capabilities = append(f.Allow[i].Capabilities, auth.Capability{Name: "z"})
		f.Allow[i].Roles = []string{"viewer"}
		return nil
	})
	got, f := read(t, path)
	for _, keep := range []string{"// alice: the first user", "// inside alice", "/* block inside alice */",
		"// bob's own comment", "// carol comes last", "// one line", "// trailing"} {
		assert.Contains(t, got, keep)
	}
	bob := f.Allow[index(f, "bob")]
	assert.Equal(t, []string{"y", "z"}, bob.Capabilities.Names())
	assert.Equal(t, []string{"viewer"}, bob.Roles)

	// Removing the middle entry keeps the others' comments.
	edit(t, path, func(f *auth.File) error {
		f.Allow = slices.Delete(f.Allow, 1, 2)
		return nil
	})
	got, f = read(t, path)
	assert.NotContains(t, got, "bob's own comment")
	for _, keep := range []string{"// alice: the first user", "// inside alice", "// carol comes last", "// one line", "// trailing"} {
		assert.Contains(t, got, keep)
	}
	assert.Len(t, f.Allow, 2)

	// Removing the last entry takes the comma of the one before it.
	edit(t, path, func(f *auth.File) error {
		f.Allow = f.Allow[:1]
		return nil
	})
	got, f = read(t, path)
	assert.Len(t, f.Allow, 1)
	assert.Contains(t, got, "// inside alice")
	assert.NotContains(t, got, "carol")

	// New top-level keys and new roles are appended.
	edit(t, path, func(f *auth.File) error {
		f.Roles["admin"] = []string{"stop"}
		f.Groups = map[string][]string{"ops": {"admin"}}
		return nil
	})
	got, f = read(t, path)
	assert.Equal(t, []string{"stop"}, f.Roles["admin"])
	assert.Equal(t, []string{"admin"}, f.Groups["ops"])
	assert.Contains(t, got, "// trailing")
}

func TestEditFile_EveryEntryOfTheExampleFileCanBeEditedKeepingItsComments(t *testing.T) {
	orig, err := os.ReadFile("../auth.json.example")
	require.NoError(t, err)
	var comments []string
	for _, line := range strings.Split(string(orig), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "//") {
			comments = append(comments, strings.TrimSpace(line))
		}
	}
	f0, err := auth.ParseFile("example", orig)
	require.NoError(t, err)
	for i, e := range f0.Allow {
		if e.UserID == "*" {
			continue
		}
		t.Run(e.UserID, func(t *testing.T) {
			path := writeFile(t, string(orig))
			edit(t, path, func(f *auth.File) error {
				f.Allow[i].Capabilities = append(f.Allow[i].Capabilities, auth.Capability{Name: "new_cap"})
				v := false
				f.Allow[i].Enabled = &v
				return nil
			})
			got, f := read(t, path)
			assert.Contains(t, f.Allow[i].Capabilities.Names(), "new_cap")
			assert.False(t, f.Allow[i].IsEnabled())
			kept := 0
			for _, c := range comments {
				if strings.Contains(got, c) {
					kept++
				}
			}
			assert.Equal(t, len(comments), kept, "every comment line kept")
		})
	}
}

func TestEditFile_AnInvalidResultWritesNothing(t *testing.T) {
	path := writeFile(t, commentedFile)
	err := auth.EditFile(context.Background(), path, func(f *auth.File) error {
		f.Allow = append(f.Allow, auth.Entry{UserID: "a", Credentials: z85Key(t), Roles: []string{"no_such_role"}})
		return nil
	})
	require.ErrorIs(t, err, auth.ErrInvalidEdit)
	var ve *auth.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Contains(t, ve.Error(), "no_such_role")
	data, _ := os.ReadFile(path)
	assert.Equal(t, commentedFile, string(data))
	assert.NoFileExists(t, path+".bak")
}

func TestEditFile_AnInvalidFileOnDiskIsNotEdited(t *testing.T) {
	path := writeFile(t, `{"allow": [{"user_id": "a", "capabilites": []}]}`)
	err := auth.EditFile(context.Background(), path, func(f *auth.File) error { return nil })
	require.ErrorIs(t, err, auth.ErrInvalidFile)
	assert.Contains(t, err.Error(), `did you mean "capabilities"`)
}

func TestEditFile_KeepsTheModeAndABackup(t *testing.T) {
	path := writeFile(t, commentedFile)
	require.NoError(t, os.Chmod(path, 0o640))
	edit(t, path, func(f *auth.File) error {
		f.Allow = append(f.Allow, auth.Entry{UserID: "a", Credentials: z85Key(t)})
		return nil
	})
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm())
	bak, err := os.ReadFile(path + ".bak")
	require.NoError(t, err)
	assert.Equal(t, commentedFile, string(bak))
}

func TestEditFile_AMissingFileIsCreated0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.json")
	edit(t, path, func(f *auth.File) error {
		f.Allow = append(f.Allow, auth.Entry{UserID: "a", Credentials: z85Key(t)})
		return nil
	})
	_, f := read(t, path)
	assert.Len(t, f.Allow, 1)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

func TestEditFile_WaitsForAnotherEditAndFailsWhenItLastsTooLong(t *testing.T) {
	path := writeFile(t, commentedFile)
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- auth.EditFile(context.Background(), path, func(f *auth.File) error {
			close(inside)
			<-release
			f.Allow = append(f.Allow, auth.Entry{UserID: "first", Credentials: z85Key(t)})
			return nil
		})
	}()
	<-inside
	err := auth.EditFile(context.Background(), path, func(f *auth.File) error { return nil }, auth.WithLockWait(0))
	require.ErrorIs(t, err, auth.ErrEditLocked)

	second := make(chan error, 1)
	go func() {
		second <- auth.EditFile(context.Background(), path, func(f *auth.File) error {
			f.Allow = append(f.Allow, auth.Entry{UserID: "second", Credentials: z85Key(t)})
			return nil
		}, auth.WithLockWait(10*time.Second))
	}()
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, <-second)
	_, f := read(t, path)
	assert.Len(t, f.Allow, 2, "the waiting edit saw the first one's result")
}

func TestEditFile_ConcurrentEditsAreSerialisedNoneLost(t *testing.T) {
	path := writeFile(t, `{"allow": [{"user_id": "a", "credentials": "`+z85Key(t)+`"}]}`)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			assert.NoError(t, auth.EditFile(context.Background(), path, func(f *auth.File) error {
				f.Allow[0].Capabilities = append(f.Allow[0].Capabilities, auth.Capability{Name: "cap" + string(rune('a'+i))})
				return nil
			}))
		})
	}
	wg.Wait()
	_, f := read(t, path)
	assert.Len(t, f.Allow[0].Capabilities, 8)
}
