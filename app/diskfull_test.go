package app

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/store/bolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// smallDisk mounts a tmpfs of size bytes for the data dir, or skips where mounting is not
// allowed (not root, no CAP_SYS_ADMIN).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v: %s); the disk-full path is covered by store's refused-write tests", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

func TestAFullDiskAnswers503AndLosesNoAcknowledgedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a filesystem")
	}
	dataDir := smallDisk(t, "1m")
	cfgDir := t.TempDir()
	writeFiles(t, cfgDir, map[string]string{
		"pushbackd.yaml":     "listen: 127.0.0.1:0\n",
		"partners/acme.yaml": "id: acme\nendpoints: [{name: big, saga: answers, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/answers.yaml": "name: answers\nsteps:\n  - {name: answer, respond: {status: 200}}\n",
	})
	core, logs := observer.New(zapcore.InfoLevel)
	a, err := New(Options{ConfigPath: filepath.Join(cfgDir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", DataDir: dataDir, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 64<<10)
	var acked []string
	refused := 0
	for i := 0; i < 40 && refused < 3; i++ {
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/pushback/acme/big", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer t")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ans struct {
			RunID string `json:"run_id"`
		}
		_ = jsonDecode(resp, &ans)
		switch resp.StatusCode {
		case 200:
			acked = append(acked, ans.RunID)
		case 503:
			refused++
			if resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		default:
			t.Fatalf("answer %d on a full disk", resp.StatusCode)
		}
	}
	if len(acked) == 0 || refused == 0 {
		t.Fatalf("%d accepted, %d refused: the disk never filled or never took anything", len(acked), refused)
	}
	if n := logs.FilterMessage("cannot record the run").Len(); n == 0 {
		t.Error("no log line says why accepts are refused")
	} else if e := logs.FilterMessage("cannot record the run").All()[0]; !strings.Contains(e.ContextMap()["error"].(string), "no space") {
		t.Errorf("the log does not name the cause: %v", e.ContextMap())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = a.Stop(ctx) // outcomes may not fit on the disk either; they resume next time

	st, err := bolt.Open(filepath.Join(dataDir, "pushbackd.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Fatalf("half-written database: %v", err)
	}
	for _, id := range acked {
		if _, err := st.GetRun(context.Background(), id); err != nil {
			t.Errorf("acknowledged run %s: %v", id, err)
		}
	}
	t.Logf("%d accepted, then %d refused with 503", len(acked), refused)
}
