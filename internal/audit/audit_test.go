package audit_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/capbus/capbus/internal/audit"
)

func TestMain(m *testing.M) {
	// lumberjack starts one goroutine per file that it never stops.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}

// clock is a clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sink is a writer safe to read while the Log writes to it.
type sink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// records parses JSON lines.
func records(t *testing.T, text string) []audit.Record {
	t.Helper()
	var rs []audit.Record
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r audit.Record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "line %q", sc.Text())
		rs = append(rs, r)
	}
	require.NoError(t, sc.Err())
	return rs
}

func (s *sink) records(t *testing.T) []audit.Record {
	t.Helper()
	return records(t, s.String())
}

// newLog returns a Log writing to a sink, on a clock that moves only when
// told.
func newLog(t *testing.T, opts ...audit.Option) (*audit.Log, *sink, *clock) {
	t.Helper()
	s, c := &sink{}, newClock()
	l, err := audit.New(append([]audit.Option{audit.WithWriter(s), audit.WithClock(c.Now)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l, s, c
}

func callDenied(key string) audit.Record {
	return audit.Record{Action: audit.ActionCall, Decision: audit.DecisionDeny, UserID: "u1", Identity: "caller",
		Key: key, Peer: "callee", Method: "echo", Errno: 13, Reason: "missing capability can_echo",
		Required: []string{"can_echo"}, Missing: []string{"can_echo"}, Generation: 3, Remote: "127.0.0.1:5000"}
}

func TestLog_RepeatedDenialsInOneWindowAreTheFirstLineAndOneCount(t *testing.T) {
	l, s, c := newLog(t)
	for range 2700 {
		l.Record(callDenied("k1"))
		c.Advance(time.Second / 3000)
	}
	first := s.records(t)
	require.Len(t, first, 1, "the first denial is written at once, the others wait for the window's end")
	assert.Zero(t, first[0].Count)

	c.Advance(time.Second)
	l.Record(audit.Record{Action: audit.ActionAdmit, Decision: audit.DecisionAllow, Identity: "other"})
	rs := s.records(t)
	require.Len(t, rs, 3)
	want := callDenied("k1")
	want.Time, want.Count, want.Window = rs[0].Time.Add(time.Second), 2699, "1s"
	assert.Equal(t, want, rs[1], "the count line: the first's fields, the end of the window, the count")
	assert.Equal(t, audit.ActionAdmit, rs[2].Action)
}

func TestLog_DistinctRefusalsAreNotMerged(t *testing.T) {
	l, s, c := newLog(t)
	variants := []func(*audit.Record){
		func(*audit.Record) {},
		func(r *audit.Record) { r.Key = "k2" },
		func(r *audit.Record) { r.UserID = "u2" },
		func(r *audit.Record) { r.Identity = "caller2" },
		func(r *audit.Record) { r.Peer = "callee2" },
		func(r *audit.Record) { r.Method = "echo2" },
		func(r *audit.Record) { r.Reason = "hook refused" },
		func(r *audit.Record) { r.Errno = 1 },
		func(r *audit.Record) { r.Action, r.Method, r.Topic = audit.ActionPublish, "", "a/b" },
		func(r *audit.Record) { r.Action, r.Method, r.Topic = audit.ActionPublish, "", "a/c" },
		func(r *audit.Record) { r.Generation = 4 },
	}
	for i := range 3 {
		for _, v := range variants {
			r := callDenied("k1")
			v(&r)
			r.Remote = fmt.Sprintf("127.0.0.1:%d", 5000+i) // not part of what is identical
			l.Record(r)
		}
	}
	require.Len(t, s.records(t), len(variants), "one first line per distinct refusal")
	c.Advance(time.Second)
	require.NoError(t, l.Close())
	rs := s.records(t)
	require.Len(t, rs, 2*len(variants))
	for i, r := range rs[len(variants):] {
		want := callDenied("k1")
		variants[i](&want)
		want.Time, want.Remote, want.Count, want.Window = r.Time, "", 2, "1s"
		assert.Equal(t, want, r, "count line %d: in first-seen order, remote dropped as it differed", i)
	}
}

func TestLog_CountLineKeepsTheRemoteOfTheFurtherOccurrencesWhenTheyShareIt(t *testing.T) {
	l, s, _ := newLog(t)
	r := callDenied("k1")
	l.Record(r)
	r.Remote = "127.0.0.1:6000"
	l.Record(r)
	l.Record(r)
	require.NoError(t, l.Close())
	rs := s.records(t)
	require.Len(t, rs, 2)
	assert.Equal(t, "127.0.0.1:5000", rs[0].Remote)
	assert.Equal(t, "127.0.0.1:6000", rs[1].Remote)
	assert.Equal(t, 2, rs[1].Count)
}

// TestLog_RefusedHandshakesAggregateWhateverTheKey: a flood of made-up
// keys is one refusal repeated; the count line names a key only if the
// further ones all had it. Calls of different keys stay apart.
func TestLog_RefusedHandshakesAggregateWhateverTheKey(t *testing.T) {
	l, s, _ := newLog(t)
	for i := range 2000 {
		l.Record(audit.Record{Action: audit.ActionHandshake, Decision: audit.DecisionDeny, Key: fmt.Sprintf("key-%d", i),
			Remote: "10.0.0.9:1", Reason: "unknown key: no allow entry has this key"})
	}
	for range 3 {
		l.Record(audit.Record{Action: audit.ActionHandshake, Decision: audit.DecisionDeny, Key: "same",
			Reason: "connection limit: this key has its maximum of 64 connections"})
	}
	l.Record(callDenied("k1"))
	l.Record(callDenied("k2"))
	require.NoError(t, l.Close())
	rs := s.records(t)
	require.Len(t, rs, 6, "two lines per handshake refusal, one per call key")
	assert.Equal(t, "key-0", rs[0].Key, "the first is written whole")
	assert.Equal(t, 1999, rs[4].Count)
	assert.Empty(t, rs[4].Key, "the further ones had other keys")
	assert.Equal(t, "10.0.0.9:1", rs[4].Remote)
	assert.Equal(t, 2, rs[5].Count)
	assert.Equal(t, "same", rs[5].Key, "the further ones all had this key")
}

func TestLog_EverySortOfRefusalThatCallersRepeatIsAggregated(t *testing.T) {
	for _, act := range []string{audit.ActionHandshake, audit.ActionRefuse, audit.ActionCall, audit.ActionPublish,
		audit.ActionSubscribe, audit.ActionExport, audit.ActionReply} {
		t.Run(act, func(t *testing.T) {
			l, s, _ := newLog(t)
			for range 5 {
				l.Record(audit.Record{Action: act, Decision: audit.DecisionDeny, Key: "k", Reason: "no"})
			}
			require.NoError(t, l.Close())
			rs := s.records(t)
			require.Len(t, rs, 2)
			assert.Equal(t, 4, rs[1].Count)
		})
	}
}

func TestLog_AdmissionsAllowedCallsAndChangesAreNeverAggregated(t *testing.T) {
	l, s, _ := newLog(t)
	kinds := []audit.Record{
		{Action: audit.ActionAdmit, Decision: audit.DecisionAllow, Identity: "a"},
		{Action: audit.ActionCall, Decision: audit.DecisionAllow, Identity: "a", Peer: "b", Method: "m"},
		{Action: audit.ActionRevoke, Decision: audit.DecisionDeny, Identity: "a", Reason: "identity no longer allowed"},
		{Action: audit.ActionDisconnect, Identity: "a"},
		{Action: audit.ActionReload, Decision: audit.DecisionDeny, File: "auth.json", Reason: "bad json"},
		{Action: audit.ActionReload, Decision: audit.DecisionAllow, File: "auth.json", Generation: 2},
		{Action: audit.ActionConfig, By: "alice", Identity: "a"},
		{Action: audit.ActionGrant, By: "alice", Identity: "a", Method: "m"},
		{Action: audit.ActionStart, Version: "v1", PID: 42, Address: "tcp://127.0.0.1:22916"},
		{Action: audit.ActionStop, Version: "v1", PID: 42},
	}
	for range 3 {
		for _, r := range kinds {
			l.Record(r)
		}
	}
	require.NoError(t, l.Close())
	rs := s.records(t)
	require.Len(t, rs, 3*len(kinds), "every one written as it came")
	for _, r := range rs {
		assert.Zero(t, r.Count)
	}
}

func TestLog_ANewWindowStartsWithAFirstLineOfItsOwn(t *testing.T) {
	l, s, c := newLog(t)
	for range 3 {
		l.Record(callDenied("k1"))
	}
	c.Advance(1500 * time.Millisecond)
	for range 2 {
		l.Record(callDenied("k1"))
	}
	require.NoError(t, l.Close())
	rs := s.records(t)
	require.Len(t, rs, 4)
	assert.Equal(t, []int{0, 2, 0, 1}, []int{rs[0].Count, rs[1].Count, rs[2].Count, rs[3].Count})
	assert.Equal(t, rs[0].Time.Add(time.Second), rs[1].Time, "the first window's count line is dated at its end")
	assert.Equal(t, rs[0].Time.Add(1500*time.Millisecond), rs[2].Time)
}

func TestLog_AggregationOffWritesEveryLine(t *testing.T) {
	l, s, _ := newLog(t, audit.WithAggregation(0))
	for range 10 {
		l.Record(callDenied("k1"))
	}
	assert.Len(t, s.records(t), 10)
}

func TestLog_TheAggregationTableIsBoundedAndTheOverflowIsWrittenAndCounted(t *testing.T) {
	l, s, _ := newLog(t, audit.WithAggregationLimit(3))
	for range 2 {
		for k := range 5 {
			l.Record(callDenied(fmt.Sprintf("k%d", k)))
		}
	}
	assert.Len(t, s.records(t), 3+2*2, "3 first lines, and k3 and k4 each time")
	assert.Equal(t, uint64(4), l.Unaggregated())
	require.NoError(t, l.Close())
	rs := s.records(t)
	require.Len(t, rs, 3+4+3)
	for i, r := range rs[7:] {
		assert.Equal(t, fmt.Sprintf("k%d", i), r.Key)
		assert.Equal(t, 1, r.Count)
	}
}

func TestLog_CloseWritesThePendingCounts(t *testing.T) {
	l, s, _ := newLog(t)
	l.Record(callDenied("k1"))
	l.Record(callDenied("k1"))
	require.Len(t, s.records(t), 1)
	require.NoError(t, l.Close())
	rs := s.records(t)
	require.Len(t, rs, 2)
	assert.Equal(t, 1, rs[1].Count)
}

func TestLog_TheWindowTimerWritesTheCountOfAQuietRefusal(t *testing.T) {
	s := &sink{}
	l, err := audit.New(audit.WithWriter(s), audit.WithAggregation(20*time.Millisecond))
	require.NoError(t, err)
	defer l.Close()
	l.Record(callDenied("k1"))
	l.Record(callDenied("k1"))
	l.Record(callDenied("k1"))
	// Nothing else is recorded: only the timer can write the count.
	require.Eventually(t, func() bool { return strings.Count(s.String(), "\n") == 2 }, 10*time.Second, 5*time.Millisecond)
	rs := s.records(t)
	assert.Equal(t, 2, rs[1].Count)
	assert.Equal(t, "20ms", rs[1].Window)
}

func TestLog_RecordAfterCloseIsAWriteError(t *testing.T) {
	var got []error
	l, s, _ := newLog(t, audit.WithOnWriteError(func(err error) { got = append(got, err) }))
	require.NoError(t, l.Close())
	l.Record(audit.Record{Action: audit.ActionDisconnect})
	assert.Empty(t, s.String())
	assert.Equal(t, uint64(1), l.WriteErrors())
	require.Len(t, got, 1)
	assert.ErrorIs(t, got[0], audit.ErrClosed)
	assert.ErrorIs(t, l.Reopen(), audit.ErrClosed)
	assert.ErrorIs(t, l.Rotate(), audit.ErrClosed)
	assert.NoError(t, l.Close(), "a second Close does nothing")
}

// failing is a writer that fails every write.
type failing struct{}

var errDiskFull = errors.New("disk full")

func (failing) Write([]byte) (int, error) { return 0, errDiskFull }

func TestLog_AFailingWriterIsCountedReportedAndLoggedAtMostOnceASecond(t *testing.T) {
	var logged sink
	var mu sync.Mutex
	var got []error
	good := &sink{}
	l, _, c := newLog(t,
		audit.WithWriter(failing{}), audit.WithWriter(good),
		audit.WithLogger(slog.New(slog.NewJSONHandler(&logged, &slog.HandlerOptions{Level: slog.LevelError}))),
		audit.WithOnWriteError(func(err error) { mu.Lock(); got = append(got, err); mu.Unlock() }))
	for i := range 10 {
		require.NotPanics(t, func() { l.Record(audit.Record{Action: audit.ActionAdmit, Identity: fmt.Sprint(i)}) })
	}
	assert.Equal(t, uint64(10), l.WriteErrors())
	require.Len(t, got, 10)
	assert.ErrorIs(t, got[0], errDiskFull)
	assert.Len(t, good.records(t), 10, "the other writer still gets every line")
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	require.Len(t, lines, 1, "one Error line within the second")
	assert.Contains(t, lines[0], `"failures":1`)
	assert.Contains(t, lines[0], "disk full")

	c.Advance(time.Second)
	l.Record(audit.Record{Action: audit.ActionAdmit})
	lines = strings.Split(strings.TrimSpace(logged.String()), "\n")
	require.Len(t, lines, 2)
	assert.Contains(t, lines[1], `"failures":10`, "the nine held back and this one")
}

func TestLog_LoggerGetsEachLineWithItsNonEmptyFields(t *testing.T) {
	var logged sink
	l, _, _ := newLog(t, audit.WithLogger(slog.New(slog.NewJSONHandler(&logged, nil))))
	l.Record(callDenied("k<1>&"))
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(logged.String()), &m))
	assert.Equal(t, "audit", m["msg"])
	assert.Equal(t, "INFO", m["level"])
	for k, v := range map[string]any{"action": "call", "decision": "deny", "user_id": "u1", "identity": "caller",
		"key": "k<1>&", "remote": "127.0.0.1:5000", "peer": "callee", "method": "echo", "errno": 13.0,
		"reason": "missing capability can_echo", "generation": 3.0,
		"required": []any{"can_echo"}, "missing": []any{"can_echo"}} {
		assert.Equal(t, v, m[k], k)
	}
	for _, k := range []string{"topic", "file", "count", "window", "version", "pid", "address", "by"} {
		assert.NotContains(t, m, k)
	}
}

func TestLog_Z85KeysWithHTMLCharactersStayReadable(t *testing.T) {
	l, s, _ := newLog(t)
	key := "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
	l.Record(audit.Record{Action: audit.ActionHandshake, Decision: audit.DecisionDeny, Key: key + "<&>"})
	assert.Contains(t, s.String(), `"key":"`+key+`<&>"`)
}

func TestLog_TimeIsFilledInFromTheClockAndWrittenInUTC(t *testing.T) {
	l, s, c := newLog(t)
	l.Record(audit.Record{Action: audit.ActionStart})
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	l.Record(audit.Record{Action: audit.ActionStop, Time: at})
	assert.Contains(t, s.String(), `"time":"`+c.Now().Format(time.RFC3339Nano)+`"`)
	assert.Contains(t, s.String(), `"time":"2026-01-02T02:04:05.000000006Z"`)
}

func TestLog_ConcurrentRecordsAreAllAccountedFor(t *testing.T) {
	s := &sink{}
	l, err := audit.New(audit.WithWriter(s), audit.WithAggregation(time.Millisecond))
	require.NoError(t, err)
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if i%2 == 0 {
					l.Record(callDenied(fmt.Sprintf("k%d", w%3)))
				} else {
					l.Record(audit.Record{Action: audit.ActionAdmit, Identity: fmt.Sprint(w)})
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, l.Close())
	denials, admits := 0, 0
	for _, r := range s.records(t) {
		switch r.Action {
		case audit.ActionCall:
			denials += max(r.Count, 1) // a first line stands for 1
		case audit.ActionAdmit:
			admits++
		}
	}
	assert.Equal(t, workers*each/2, denials)
	assert.Equal(t, workers*each/2, admits)
}

func TestNew_RejectsBadOptionsNamingThem(t *testing.T) {
	for name, opt := range map[string]audit.Option{
		"WithRotation: maxSizeMB":  audit.WithRotation(0, 5),
		"WithRotation: maxBackups": audit.WithRotation(10, -1),
		"WithAggregation":          audit.WithAggregation(-time.Second),
		"WithAggregationLimit":     audit.WithAggregationLimit(0),
	} {
		_, err := audit.New(opt)
		require.ErrorIs(t, err, audit.ErrInvalidOption, name)
		assert.Contains(t, err.Error(), name)
	}
}

func TestNew_FailsOnAFileItCannotCreateNamingIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "audit.log")
	_, err := audit.New(audit.WithFile(path))
	require.ErrorIs(t, err, fs.ErrNotExist)
	assert.Contains(t, err.Error(), path)
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Mode().Perm()
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func TestLog_FileIsCreatedWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.New(audit.WithFile(path))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), mode(t, path), "before the first record")
	l.Record(audit.Record{Action: audit.ActionStart})
	require.NoError(t, l.Close())
	assert.Len(t, records(t, read(t, path)), 1)
}

func TestLog_ReopenAfterTheFileWasRenamedAwayWritesANewFileAtThePath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := audit.New(audit.WithFile(path))
	require.NoError(t, err)
	l.Record(audit.Record{Action: audit.ActionStart})
	moved := filepath.Join(dir, "audit.log.1")
	require.NoError(t, os.Rename(path, moved))
	l.Record(audit.Record{Action: audit.ActionAdmit}) // still to the moved file, as logrotate expects
	require.NoError(t, l.Reopen())
	assert.Equal(t, fs.FileMode(0o600), mode(t, path))
	l.Record(audit.Record{Action: audit.ActionStop})
	require.NoError(t, l.Close())

	old := records(t, read(t, moved))
	require.Len(t, old, 2)
	assert.Equal(t, audit.ActionAdmit, old[1].Action)
	cur := records(t, read(t, path))
	require.Len(t, cur, 1)
	assert.Equal(t, audit.ActionStop, cur[0].Action)
}

// backups lists the rotated files beside path.
func backups(t *testing.T, path string) []string {
	t.Helper()
	all, err := filepath.Glob(strings.TrimSuffix(path, ".log") + "-*.log")
	require.NoError(t, err)
	return all
}

func TestLog_RotateNowMovesTheFileAsideAndStartsAnEmptyOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.New(audit.WithFile(path))
	require.NoError(t, err)
	l.Record(audit.Record{Action: audit.ActionStart})
	require.NoError(t, l.Rotate())
	l.Record(audit.Record{Action: audit.ActionStop})
	require.NoError(t, l.Close())
	bs := backups(t, path)
	require.Len(t, bs, 1)
	assert.Equal(t, audit.ActionStart, records(t, read(t, bs[0]))[0].Action)
	assert.Equal(t, fs.FileMode(0o600), mode(t, bs[0]))
	assert.Equal(t, fs.FileMode(0o600), mode(t, path))
	assert.Equal(t, audit.ActionStop, records(t, read(t, path))[0].Action)
}

func TestLog_RotationBySizeKeepsMaxBackups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.New(audit.WithFile(path), audit.WithRotation(1, 2))
	require.NoError(t, err)
	r := audit.Record{Action: audit.ActionAdmit, Reason: strings.Repeat("x", 1000)}
	const n = 4600 // about 4.6 MB: four rotations
	for i := range n {
		r.Generation = uint64(i + 1)
		l.Record(r)
	}
	require.NoError(t, l.Close())
	// lumberjack removes the oldest backups on a goroutine of its own.
	require.Eventually(t, func() bool { return len(backups(t, path)) == 2 }, 10*time.Second, 10*time.Millisecond)
	cur := records(t, read(t, path))
	require.NotEmpty(t, cur)
	assert.Equal(t, uint64(n), cur[len(cur)-1].Generation, "the newest line is in the file at the path")
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.LessOrEqual(t, info.Size(), int64(1<<20))
	for _, b := range append(backups(t, path), path) {
		assert.Equal(t, fs.FileMode(0o600), mode(t, b), b)
	}
}
