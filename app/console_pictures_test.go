package app

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pushbackd/pushbackd/security"
)

// TestConsolePictures writes a PNG of each console page into the -console.png directory,
// against a copy of the demo configuration (configs/) with some runs made by real signed
// pushbacks: `go test ./app/ -run TestConsolePictures -console.png docs` refreshes the
// README's pictures. Without the flag there is nothing to do.
func TestConsolePictures(t *testing.T) {
	if *consolePNG == "" {
		t.Skip("writes pictures only with -console.png DIR")
	}
	out, err := filepath.Abs(*consolePNG)
	if err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../configs")); err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		DataDir: filepath.Join(dir, "data"), Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(t.Context()) })
	admin := newAdmin(t, a)

	// Runs as the demo's partners send them: GitHub-signed events and bearer-token
	// Encompass events, one of them refused by the endpoint's schema (no run).
	send := func(endpoint string, body string, header http.Header) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/pushback/acme/"+endpoint, strings.NewReader(body))
		req.Header = header
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for i := range 6 {
		body := `{"eventId":"e-` + strconv.Itoa(i) + `","eventType":"milestone","meta":{"resourceId":"loan-` + strconv.Itoa(100+i) + `","resourceType":"Loan"}}`
		send("checked", body, http.Header{"Authorization": {"Bearer demo-bearer-token"}})
		gh := `{"action":"opened","number":` + strconv.Itoa(i) + `}`
		send("github", gh, http.Header{"X-Hub-Signature-256": {security.SignatureValue([]byte("demo-github-secret"), []byte(gh), "hex", "sha256=")}})
	}
	runs := admin.json(http.MethodGet, "/admin/v1/runs?limit=1", "", http.StatusOK)["runs"].([]any)
	if len(runs) == 0 {
		t.Fatal("the demo pushbacks made no runs")
	}
	runID := runs[0].(map[string]any)["id"].(string)
	base := "http://" + a.AdminAddr()
	run(t, ctx, "log in", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), admin.token+kb.Enter), chromedp.WaitVisible(chromedp.CSS("#queue-depth")))
	for _, p := range []struct {
		name, path string
		then       []chromedp.Action[chromedp.Void]
	}{
		{"overview", "/", nil}, {"runs", "/runs", nil}, {"run", "/runs/" + runID, nil},
		{"endpoints", "/endpoints", nil}, {"sagas", "/sagas", nil},
		{"editor", "/sagas/demo-echo", []chromedp.Action[chromedp.Void]{
			chromedp.SetValue(chromedp.CSS("#sample"), `{"partner": "acme", "endpoint": "checked", "body": {"eventType": "milestone", "eventId": "e-7"}}`),
			chromedp.Click(chromedp.CSS("#plan")), chromedp.WaitVisible(chromedp.CSS("#try-summary.ok"))}},
	} {
		t.Run("a picture of the "+p.name+" page", func(t *testing.T) {
			run(t, ctx, "open "+p.path, chromedp.Navigate(base+p.path), chromedp.WaitReady(chromedp.CSS("main")))
			if p.then != nil {
				run(t, ctx, "prepare "+p.path, p.then...)
			}
			png := get(t, ctx, "screenshot", chromedp.FullScreenshot(100))
			if err := os.WriteFile(filepath.Join(out, "console-"+p.name+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}
